"""Tenant console campaign pages (permission ``grants.manage``): the tenant's campaigns with their public claim
links (``/h5/campaign/<token>``, to copy into an SMS or print as a QR poster) and claim counts, a form that
creates one, and each campaign's page: its counts, an edit form, and "Stop" / "Resume".

The rules live in :mod:`core.campaigns.services` (the same services the API calls); this controller reads the
forms, turns the tenant-local times into aware datetimes and renders.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.response import Redirect
from markupsafe import Markup

from admin_ui.console_pages import shell
from admin_ui.forms import FormInvalid, FormProblem, problem_of, read_form, values
from admin_ui.grants_pages import product_names
from admin_ui.i18n import N_
from admin_ui.rendering import flash, locale_of, render, translator
from core.campaigns import services
from core.campaigns.funnel import campaign_funnel
from core.campaigns.poster import campaign_poster
from core.campaigns.schemas import (
    MAX_CLAIM_QUANTITY,
    MAX_PER_MEMBER_LIMIT,
    CampaignCreate,
    CampaignOut,
    CampaignUpdate,
)
from core.claims.qr import qr_svg
from core.db.types import DbSession
from core.errors import DomainError
from core.grants.services import grantable_products
from core.kpis.charts import bar_chart
from tenants.guards import provide_db, require_permission

PAGE = 100
CAMPAIGN_STATE_LABELS: dict[str, str] = {
    "open": N_("Campaign open"),
    "inactive": N_("Campaign paused"),
    "not_started": N_("Campaign not started"),
    "ended": N_("Campaign ended"),
    "stopped": N_("Campaign stopped"),
}
FUNNEL_LABELS: dict[str, str] = {
    "sent": N_("Links sent"),
    "opened": N_("Opened"),
    "claimed": N_("Claimed"),
    "redeemed": N_("Redeemed"),
}
_RANGE_MESSAGES: dict[str, tuple[str, int]] = {
    "quantity": (N_("Units per claim must be between 1 and %(max)s."), MAX_CLAIM_QUANTITY),
    "per_member_limit": (N_("Claims per member must be between 1 and %(max)s."), MAX_PER_MEMBER_LIMIT),
}
_FIELDS = ("name", "product_id", "quantity", "per_member_limit", "starts_at", "ends_at")
_EDIT_FIELDS = ("name", "quantity", "per_member_limit", "starts_at", "ends_at")
_EMPTY_FORM: dict[str, Any] = dict.fromkeys(_FIELDS, "") | {
    "quantity": "1",
    "per_member_limit": "1",
    "active": True,
}
_LOCAL = "%Y-%m-%dT%H:%M"  # the value format of <input type="datetime-local">


def _failure(exc: Exception, request: Request[Any, Any, Any]) -> tuple[FormProblem, int]:
    """The form message: the service's own (zh/en), except range errors which name the field readably."""
    t = translator(request)
    if isinstance(exc, DomainError):
        first = exc.errors[0] if exc.errors else None
        if first is not None and first.code == "out_of_range" and first.field in _RANGE_MESSAGES:
            message, high = _RANGE_MESSAGES[first.field]
            return FormProblem(t.gettext(message) % {"max": high}, first.field), exc.status
        return problem_of(exc, t, locale_of(request)), exc.status
    return problem_of(exc, t, locale_of(request)), 422


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except ZoneInfoNotFoundError:
        return ZoneInfo("Asia/Shanghai")


def _local(value: dt.datetime | None, tz: str) -> str:
    """``value`` as a ``datetime-local`` field shows it in the tenant's timezone ("" for none)."""
    return value.astimezone(_zone(tz)).strftime(_LOCAL) if value is not None else ""


def _moment(form: dict[str, Any], name: str, tz: str) -> dt.datetime | None:
    """A ``datetime-local`` value read in the tenant's timezone; empty means "no limit"."""
    text = form[name]
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise FormInvalid(name, N_("Enter a date and time such as 2026-01-31 18:00.")) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=_zone(tz))


def _whole(form: dict[str, Any], name: str) -> int:
    try:
        return int(form[name] or "1")
    except ValueError:
        raise FormInvalid(name, N_("Enter a whole number.")) from None


def _campaign_request(form: dict[str, Any], tz: str) -> CampaignCreate:
    """The API's request Struct from the console form (the service checks every rule)."""
    try:
        product_id = uuid.UUID(form["product_id"])
    except ValueError:
        raise FormInvalid("product_id", N_("Choose a product.")) from None
    return CampaignCreate(
        name=form["name"][:200],
        product_id=product_id,
        quantity=_whole(form, "quantity"),
        per_member_limit=_whole(form, "per_member_limit"),
        starts_at=_moment(form, "starts_at", tz),
        ends_at=_moment(form, "ends_at", tz),
        active=bool(form["active"]),
    )


def _edit_form(campaign: CampaignOut, tz: str) -> dict[str, Any]:
    return {
        "name": campaign.name,
        "quantity": str(campaign.quantity),
        "per_member_limit": str(campaign.per_member_limit),
        "starts_at": _local(campaign.starts_at, tz),
        "ends_at": _local(campaign.ends_at, tz),
        "active": campaign.active,
    }


def _update_request(form: dict[str, Any], current: CampaignOut, tz: str) -> CampaignUpdate:
    """The API's PATCH Struct from the edit form. A time shown unchanged is left as stored: the form's
    minute precision must not shave off the seconds of a time set through the API."""
    shown = _edit_form(current, tz)
    times = {
        name: (msgspec.UNSET if form[name] == shown[name] else _moment(form, name, tz))
        for name in ("starts_at", "ends_at")
    }
    return CampaignUpdate(
        name=form["name"],
        quantity=_whole(form, "quantity"),
        per_member_limit=_whole(form, "per_member_limit"),
        starts_at=times["starts_at"],
        ends_at=times["ends_at"],
        active=bool(form["active"]),
    )


class CampaignsController(Controller):
    path = "/campaigns"
    guards = [require_permission("grants.manage")]
    dependencies = {"db": Provide(provide_db)}

    async def _list(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        *,
        form: dict[str, Any] | None = None,
        problem: FormProblem | None = None,
        created: CampaignOut | None = None,
        status: int = 200,
    ) -> Response[str]:
        kernel = request.app.state.kernel
        campaigns = (await services.list_campaigns(db, kernel, None, PAGE)).items
        choices = await grantable_products(db)
        ctx = await shell(request, db)
        ctx.update(
            campaigns=campaigns,
            state_labels=CAMPAIGN_STATE_LABELS,
            names=await product_names(db, {c.product_id for c in campaigns}),
            products=choices,
            form=form or _EMPTY_FORM,
            problem=problem,
            created=created,
            created_qr=Markup(qr_svg(created.short_url or created.url, label=created.name)) if created else None,
            max_quantity=MAX_CLAIM_QUANTITY,
            max_per_member=MAX_PER_MEMBER_LIMIT,
        )
        return render(request, "console/campaigns/list.html", ctx, status=status)

    @get("/")
    async def campaigns(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        """The tenant's campaigns, newest first, with their public claim links and counts, and the create form."""
        return await self._list(request, db)

    @post("/", status_code=200)
    async def create(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        """Create a campaign through the API's service; the response shows its public claim link."""
        raw = await read_form(request)
        form: dict[str, Any] = {**values(raw, *_FIELDS), "active": raw.get("active") == "on"}
        tz = (await shell(request, db))["tz"]
        try:
            created = await services.create_campaign(
                db, request.app.state.kernel, _campaign_request(form, tz)
            )
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._list(request, db, form=form, problem=problem, status=status)
        return await self._list(request, db, created=created)

    async def _detail(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        campaign_id: uuid.UUID,
        *,
        form: dict[str, Any] | None = None,
        problem: FormProblem | None = None,
        status: int = 200,
    ) -> Response[str]:
        campaign = await services.campaign_out(db, request.app.state.kernel, campaign_id)
        ctx = await shell(request, db)
        found = await campaign_funnel(db, campaign.id, campaign.ref)
        t = translator(request)
        ctx.update(
            c=campaign,
            funnel=found,
            funnel_labels=FUNNEL_LABELS,
            funnel_chart=Markup(bar_chart(  # the chart function escapes every text it draws
                "chart-funnel", t.gettext("Campaign funnel"), [t.gettext(FUNNEL_LABELS[s.step]) for s in found.steps],
                [s.count for s in found.steps], width=480)),
            state_labels=CAMPAIGN_STATE_LABELS,
            product=(await product_names(db, {campaign.product_id})).get(campaign.product_id),
            qr=Markup(qr_svg(campaign.short_url or campaign.url, label=campaign.name)),
            form=form or _edit_form(campaign, ctx["tz"]),
            problem=problem,
            max_quantity=MAX_CLAIM_QUANTITY,
            max_per_member=MAX_PER_MEMBER_LIMIT,
        )
        return render(request, "console/campaigns/detail.html", ctx, status=status)

    @get("/{campaign_id:uuid}")
    async def detail(
        self, request: Request[Any, Any, Any], db: DbSession, campaign_id: uuid.UUID
    ) -> Response[str]:
        """One campaign: link and QR, claim counts, the edit form and "Stop" / "Resume"."""
        return await self._detail(request, db, campaign_id)

    @get("/{campaign_id:uuid}/poster.svg")
    async def poster(
        self, request: Request[Any, Any, Any], db: DbSession, campaign_id: uuid.UUID
    ) -> Response[str]:
        """The campaign's printable poster (SVG, downloaded): name, product and the short link's QR code."""
        filename, svg = await campaign_poster(db, request.app.state.kernel, campaign_id)
        return Response(
            svg,
            media_type="image/svg+xml",
            headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
        )

    @post("/{campaign_id:uuid}", status_code=200)
    async def update(
        self, request: Request[Any, Any, Any], db: DbSession, campaign_id: uuid.UUID
    ) -> Response[Any]:
        """Save the edit form through the API's service (the PATCH rules)."""
        raw = await read_form(request)
        form: dict[str, Any] = {**values(raw, *_EDIT_FIELDS), "active": raw.get("active") == "on"}
        kernel = request.app.state.kernel
        tz = (await shell(request, db))["tz"]
        current = await services.campaign_out(db, kernel, campaign_id)
        try:
            await services.update_campaign(db, kernel, campaign_id, _update_request(form, current, tz))
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._detail(request, db, campaign_id, form=form, problem=problem, status=status)
        flash(request, translator(request).gettext("The campaign is saved."))
        return Redirect(f"/console/campaigns/{campaign_id}", status_code=303)

    @post("/{campaign_id:uuid}/stop", status_code=303)
    async def stop(self, request: Request[Any, Any, Any], db: DbSession, campaign_id: uuid.UUID) -> Redirect:
        """End the campaign now (idempotent); its page then says the campaign has ended."""
        await services.stop_campaign(db, request.app.state.kernel, campaign_id)
        flash(
            request,
            translator(request).gettext("The campaign is stopped: its page no longer hands out codes."),
        )
        return Redirect(f"/console/campaigns/{campaign_id}", status_code=303)

    @post("/{campaign_id:uuid}/resume", status_code=303)
    async def resume(
        self, request: Request[Any, Any, Any], db: DbSession, campaign_id: uuid.UUID
    ) -> Redirect:
        """Undo a stop; the campaign is open again if its window and the active switch allow."""
        await services.resume_campaign(db, request.app.state.kernel, campaign_id)
        flash(request, translator(request).gettext("The campaign is resumed."))
        return Redirect(f"/console/campaigns/{campaign_id}", status_code=303)
