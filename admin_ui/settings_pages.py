"""Tenant console "Branding" settings (店铺展示与短信): the shop name and logo members see on the H5 pages,
and the signature and texts of the SMS the tenant's notifier accounts send (one-time code, transferred
code's claim link, expiry reminder). Owners and admins (``connectors.manage``: they own the notifier
accounts these texts go through).

Everything goes through :mod:`core.notifications.branding`; the page only reads the form and renders.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import Provide
from litestar.response import Redirect

from admin_ui.console_pages import shell
from admin_ui.forms import FormProblem, problem_of, read_form, values
from admin_ui.i18n import N_
from admin_ui.rendering import flash, locale_of, render, translator
from core.db.types import DbSession
from core.errors import DomainError
from core.notifications import branding
from tenants.guards import provide_db, require_permission

PERMISSION = "connectors.manage"
#: The form's upload ceiling: the logo limit plus room for the multipart envelope.
UPLOAD_CEILING = branding.MAX_LOGO_BYTES + 64 * 1024
TEMPLATE_LABELS: dict[str, str] = {
    "claim_otp": N_("One-time code SMS"),
    "claim_transfer": N_("Transferred code SMS"),
    "expiry_reminder": N_("Expiry reminder SMS"),
}
PLACEHOLDER_LABELS: dict[str, str] = {
    "code": N_("the 6-digit code"),
    "minutes": N_("minutes it is valid"),
    "giver": N_("the giver's masked phone"),
    "product_name": N_("product name"),
    "days": N_("days the link is valid"),
    "link": N_("the claim link"),
    "greeting": N_("member's name (may be empty)"),
    "count": N_("number of codes"),
    "expires_on": N_("first expiry date"),
    "products": N_("products and counts"),
}
SAMPLE = {
    "code": "123456",
    "minutes": "5",
    "giver": "138****5678",
    "product_name": "咖啡兑换券",
    "days": "7",
    "link": "https://example.com/h5/c/…",
    "greeting": "张三",
    "count": "2",
    "expires_on": "2027-06-30",
    "products": "· 咖啡兑换券 ×2",
}


class SettingsController(Controller):
    path = "/settings/branding"
    guards = [require_permission(PERMISSION)]
    dependencies = {"db": Provide(provide_db)}

    async def _page(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        *,
        form: dict[str, str] | None = None,
        problem: FormProblem | None = None,
        status: int = 200,
    ) -> Response[str]:
        ctx = await shell(request, db)
        tenant = ctx["tenant"]
        brand = await branding.branding(db, tenant.name)
        current = {
            "display_name": brand.custom_name,
            "sms_signature": brand.custom_signature,
            **{f"template_{k}": v for k, v in brand.templates.items()},
        }
        previews = {k: branding.sms_text(brand, k, SAMPLE) for k in branding.SMS_TEMPLATES}
        ctx.update(
            active="settings",
            form=form or current,
            problem=problem,
            brand=brand,
            logo_url=f"/h5/logo/{tenant.slug}/{brand.logo_digest[:16]}" if brand.logo_digest else "",
            templates=branding.SMS_TEMPLATES,
            template_labels=TEMPLATE_LABELS,
            placeholder_labels=PLACEHOLDER_LABELS,
            previews=previews,
            max_logo_kb=branding.MAX_LOGO_BYTES // 1024,
            max_template=branding.MAX_TEMPLATE_LENGTH,
            min_signature=branding.MIN_SIGNATURE,
            max_signature=branding.MAX_SIGNATURE,
        )
        return render(request, "console/settings/branding.html", ctx, status=status)

    @get("/")
    async def index(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        """The shop name, logo, SMS signature and texts (with a preview of each text)."""
        return await self._page(request, db)

    @post("/", status_code=303)
    async def save(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        """Save the name, signature and texts (all checked before anything is written)."""
        raw = await read_form(request)
        keys = [f"template_{k}" for k in branding.SMS_TEMPLATES]
        form = values(raw, "display_name", "sms_signature", *keys)
        t = translator(request)
        try:
            await branding.save_branding(
                db,
                form["display_name"],
                form["sms_signature"],
                {k: form[f"template_{k}"] for k in branding.SMS_TEMPLATES},
            )
        except DomainError as exc:
            await db.rollback()
            return await self._page(
                request, db, form=form, problem=problem_of(exc, t, locale_of(request)), status=exc.status
            )
        flash(request, t.gettext("Saved: members see the new name and texts from now on."))
        return Redirect("/console/settings/branding", status_code=303)

    @post("/logo", status_code=303, request_max_body_size=UPLOAD_CEILING)
    async def upload_logo(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        """Store the uploaded logo (PNG, JPEG or WebP, at most 200 KB)."""
        raw = await read_form(request)
        upload = raw.get("logo")
        t = translator(request)
        try:
            data = await upload.read() if isinstance(upload, UploadFile) and upload.filename else b""
            await branding.save_logo(db, data, upload.content_type if isinstance(upload, UploadFile) else None)
        except DomainError as exc:
            await db.rollback()
            return await self._page(
                request, db, problem=problem_of(exc, t, locale_of(request)), status=exc.status
            )
        flash(request, t.gettext("Logo saved."))
        return Redirect("/console/settings/branding", status_code=303)

    @post("/logo/remove", status_code=303)
    async def remove_logo(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        await branding.remove_logo(db)
        flash(request, translator(request).gettext("Logo removed."))
        return Redirect("/console/settings/branding", status_code=303)
