"""Tenant console "Listings" pages (渠道商品): each listing's quota bar against the product's stock, its price,
sync state and drift; a listing's price history; creating, changing, pausing and resuming listings.

Seeing them: permission ``listings.read`` (everyone); changing them: ``listings.manage`` (operators).
Everything goes through :mod:`core.channels.services` and :mod:`core.channels.views`, the same services as
``/api/v1/listings``. Amounts are typed in yuan and percentages with up to two decimals (both become
integers: fen and basis points).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect

from admin_ui.console_pages import shell
from admin_ui.forms import FormInvalid, FormProblem, convert, problem_of, read_form, values
from admin_ui.i18n import N_
from admin_ui.money import AmountInvalid, fen_to_yuan, yuan_to_fen
from admin_ui.rendering import flash, locale_of, render, translator
from core.channels import services, views
from core.channels.schemas import ListingIn, ListingPatch
from core.db.types import DbSession
from core.errors import DomainError
from tenants.guards import provide_db, require_permission
from tenants.scopes import role_can

VIEW_PERMISSION = "listings.read"
MANAGE_PERMISSION = "listings.manage"
PAGE = 50
SYNC_LABELS: dict[str, str] = {"synced": N_("Synced"), "pending": N_("Waiting to sync"), "failing": N_("Sync failing")}
LISTING_STATUS_LABELS: dict[str, str] = {"active": N_("On sale"), "paused": N_("Paused")}
REASON_LABELS: dict[str, str] = {
    "manual": N_("Changed by hand"),
    "rule": N_("Price rule"),
    "expiry": N_("Near expiry"),
    "pressure": N_("Stock pressure"),
    "expiry+pressure": N_("Near expiry and stock pressure"),
}
FORM_FIELDS = ("account_id", "product_id", "sku", "title", "price_kind", "price", "base", "factor_pct", "floor",
               "ceiling", "expiry_days", "expiry_off_pct", "pressure_available", "pressure_off_pct",
               "quota_kind", "quota_value", "low_pct")
BAD_AMOUNT = N_("Enter an amount in yuan with at most two decimals, e.g. 12.50.")
BAD_NUMBER = N_("Enter a whole number.")
BAD_PERCENT = N_("Enter a percentage with at most two decimals, e.g. 90 or 12.5.")


def _amount(form: dict[str, str], name: str) -> int | None:
    text = form.get(name, "")
    if not text:
        return None
    try:
        return yuan_to_fen(text)
    except AmountInvalid:
        raise FormInvalid(name, BAD_AMOUNT) from None


def _bp(form: dict[str, str], name: str) -> int | None:
    """A percentage with up to two decimals as basis points (``12.5`` → 1250)."""
    text = form.get(name, "").rstrip("%").strip()
    if not text:
        return None
    try:
        return yuan_to_fen(text)
    except AmountInvalid:
        raise FormInvalid(name, BAD_PERCENT) from None


def _int(form: dict[str, str], name: str) -> int | None:
    text = form.get(name, "")
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise FormInvalid(name, BAD_NUMBER) from None


def _rule(form: dict[str, str]) -> dict[str, Any]:
    """The price rule fields as the API takes them (checked by :func:`convert` with the rest)."""
    expiry_days, expiry_off = _int(form, "expiry_days"), _bp(form, "expiry_off_pct")
    pressure_at, pressure_off = _int(form, "pressure_available"), _bp(form, "pressure_off_pct")
    rule: dict[str, Any] = {
        "kind": "factor" if form.get("price_kind") == "factor" else "fixed",
        "price_fen": _amount(form, "price"), "base_fen": _amount(form, "base"),
        "factor_bp": _bp(form, "factor_pct") or 10_000,
        "floor_fen": _amount(form, "floor"), "ceiling_fen": _amount(form, "ceiling"),
        "expiry_steps": [{"days": expiry_days, "off_bp": expiry_off or 0}] if expiry_days else [],
        "pressure_steps": [{"available": pressure_at, "off_bp": pressure_off or 0}] if pressure_at else [],
    }
    return rule


def _quota(form: dict[str, str]) -> dict[str, Any]:
    kind = "share" if form.get("quota_kind") == "share" else "fixed"
    value = _bp(form, "quota_value") if kind == "share" else _int(form, "quota_value")
    if value is None:
        raise FormInvalid("quota_value", BAD_NUMBER if kind == "fixed" else BAD_PERCENT)
    return {"kind": kind, "value": value}


def _pct(bp: int | None) -> str:
    return fen_to_yuan(bp) if bp is not None else ""


def _form_of(row: views.ListingRow) -> dict[str, str]:
    """The edit form filled from a listing (first step of each kind)."""
    li, rule = row.listing, row.listing.price_rule
    expiry = (rule.get("expiry_steps") or [{}])[0]
    pressure = (rule.get("pressure_steps") or [{}])[0]
    return {
        "title": li.title, "price_kind": rule.get("kind", "fixed"),
        "price": fen_to_yuan(rule.get("price_fen")), "base": fen_to_yuan(rule.get("base_fen")),
        "factor_pct": _pct(rule.get("factor_bp", 10_000)), "floor": fen_to_yuan(rule.get("floor_fen")),
        "ceiling": fen_to_yuan(rule.get("ceiling_fen")), "expiry_days": str(expiry.get("days", "")),
        "expiry_off_pct": _pct(expiry.get("off_bp")), "pressure_available": str(pressure.get("available", "")),
        "pressure_off_pct": _pct(pressure.get("off_bp")), "quota_kind": li.quota_kind,
        "quota_value": _pct(li.quota_value) if li.quota_kind == "share" else str(li.quota_value),
        "low_pct": _pct(li.low_watermark_bp),
    }


def _failure(exc: Exception, request: Request[Any, Any, Any]) -> tuple[FormProblem, int]:
    status = exc.status if isinstance(exc, DomainError) else 422
    return problem_of(exc, translator(request), locale_of(request)), status


class ListingsController(Controller):
    path = "/listings"
    guards = [require_permission(VIEW_PERMISSION)]
    dependencies = {"db": Provide(provide_db)}

    async def _list(self, request: Request[Any, Any, Any], db: DbSession, *, account: uuid.UUID | None = None,
                    cursor: uuid.UUID | None = None, form: dict[str, str] | None = None,
                    problem: FormProblem | None = None, status: int = 200) -> Response[str]:
        rows = await views.listing_rows(db, account_id=account, cursor=cursor, limit=PAGE)
        accounts, products = await views.choices(db)
        ctx = await shell(request, db)
        ctx.update(
            sync=await views.account_sync(db), rows=rows.items, next_cursor=rows.next_cursor, first_page=cursor is None, account=account,
            accounts=accounts, products=products, manage=role_can(ctx["me"].role, MANAGE_PERMISSION),
            form=form or {**dict.fromkeys(FORM_FIELDS, ""), "price_kind": "fixed", "quota_kind": "fixed",
                          "factor_pct": "100", "low_pct": "10"},
            problem=problem, sync_labels=SYNC_LABELS, status_labels=LISTING_STATUS_LABELS,
        )
        return render(request, "console/listings/list.html", ctx, status=status)

    @get("/")
    async def index(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        account: Annotated[uuid.UUID | None, Parameter(required=False)] = None,
        cursor: Annotated[uuid.UUID | None, Parameter(required=False)] = None,
    ) -> Response[str]:
        """Listings newest first (of one ``account``), with quota bars, prices, sync state and drift."""
        return await self._list(request, db, account=account, cursor=cursor)

    @post("/", status_code=303, guards=[require_permission(MANAGE_PERMISSION)])
    async def create(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        """List a product on a channel account."""
        form = values(await read_form(request), *FORM_FIELDS)
        try:
            data = convert({"account_id": form["account_id"], "product_id": form["product_id"], "sku": form["sku"],
                            "title": form["title"], "price_rule": _rule(form), "quota": _quota(form),
                            "low_watermark_bp": _bp(form, "low_pct") or 0}, ListingIn)
            created = await services.create_listing(db, data)
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._list(request, db, form=form, problem=problem, status=status)
        flash(request, translator(request).gettext("Listed: %(sku)s") % {"sku": created.sku})
        return Redirect(f"/console/listings/{created.id}", status_code=303)

    async def _detail(self, request: Request[Any, Any, Any], db: DbSession, listing_id: uuid.UUID, *,
                      form: dict[str, str] | None = None, problem: FormProblem | None = None,
                      cursor: uuid.UUID | None = None, status: int = 200) -> Response[str]:
        row = await views.listing_row(db, await services.find_listing(db, listing_id))
        history = await services.price_history(db, listing_id, cursor=cursor, limit=PAGE)
        ctx = await shell(request, db)
        ctx.update(
            row=row, li=row.listing, history=history.items, next_cursor=history.next_cursor,
            first_page=cursor is None, manage=role_can(ctx["me"].role, MANAGE_PERMISSION),
            form=form or _form_of(row), problem=problem, sync_labels=SYNC_LABELS,
            status_labels=LISTING_STATUS_LABELS, reason_labels=REASON_LABELS,
        )
        return render(request, "console/listings/detail.html", ctx, status=status)

    @get("/{listing_id:uuid}")
    async def detail(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        listing_id: uuid.UUID,
        cursor: Annotated[uuid.UUID | None, Parameter(required=False)] = None,
    ) -> Response[str]:
        """One listing: quota against stock, price and its history, sync state; the edit form."""
        return await self._detail(request, db, listing_id, cursor=cursor)

    @post("/{listing_id:uuid}", status_code=303, guards=[require_permission(MANAGE_PERMISSION)])
    async def update(self, request: Request[Any, Any, Any], db: DbSession, listing_id: uuid.UUID) -> Response[Any]:
        """Change the title, price rule, quota and low watermark."""
        form = values(await read_form(request), *FORM_FIELDS)
        try:
            patch = convert({"title": form["title"], "price_rule": _rule(form), "quota": _quota(form),
                             "low_watermark_bp": _bp(form, "low_pct") or 0}, ListingPatch)
            await services.update_listing(db, listing_id, patch)
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            if isinstance(exc, DomainError) and exc.status == 404:
                raise
            problem, status = _failure(exc, request)
            return await self._detail(request, db, listing_id, form=form, problem=problem, status=status)
        flash(request, translator(request).gettext("Saved."))
        return Redirect(f"/console/listings/{listing_id}", status_code=303)

    @post("/{listing_id:uuid}/pause", status_code=303, guards=[require_permission(MANAGE_PERMISSION)])
    async def pause(self, request: Request[Any, Any, Any], db: DbSession, listing_id: uuid.UUID) -> Response[Any]:
        await services.pause_listing(db, listing_id)
        flash(request, translator(request).gettext("Paused: the channel stops selling it."))
        return Redirect(f"/console/listings/{listing_id}", status_code=303)

    @post("/{listing_id:uuid}/resume", status_code=303, guards=[require_permission(MANAGE_PERMISSION)])
    async def resume(self, request: Request[Any, Any, Any], db: DbSession, listing_id: uuid.UUID) -> Response[Any]:
        await services.resume_listing(db, listing_id)
        flash(request, translator(request).gettext("On sale again."))
        return Redirect(f"/console/listings/{listing_id}", status_code=303)
