"""The staff scan page (核销台): a large input a barcode/QR scanner gun types into, a big green or red result,
the PIN and amount fields when the code needs them, recent redemptions with rollback, and the rollback window.

Store and terminal are remembered in the server-side session. The rules live in
:mod:`core.redemption`; this module only turns forms into calls and results into pages.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.response import Redirect

from admin_ui.console_pages import shell
from admin_ui.forms import FormInvalid, FormProblem, problem_of, read_form, values
from admin_ui.i18n import N_
from admin_ui.money import AmountInvalid, yuan_to_fen
from admin_ui.rendering import flash, locale_of, render, translator
from core.catalog.services import find_product, find_products
from core.db.base import utcnow
from core.db.types import DbSession
from core.errors import DomainError
from core.inventory.vault import masked
from core.redemption import checks, records, redeem, rollback
from core.redemption.schemas import MAX_ROLLBACK_WINDOW_MINUTES, RedeemIn
from core.stores.services import list_stores, stores_of_user
from tenants.guards import principal_of, provide_db, require_permission
from tenants.models import CLERK

RECENT = 20
SESSION_KEY = "redeem_place"
_PIN_CODES = {"pin_required", "pin_mismatch"}
_AMOUNT_CODES = {"amount_required", "insufficient_balance"}


def _caller(request: Request[Any, Any, Any]) -> checks.Caller:
    p = principal_of(request)
    ip = request.client.host if request.client else None
    clerk = p is not None and p.role == CLERK
    return checks.Caller(user_id=uuid.UUID(p.subject_id) if p else None, ip=ip, clerk=clerk)


def _place(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The store (text or record id) and terminal this browser last redeemed at (kept in the session)."""
    session = request.scope.get("session")
    saved = session.get(SESSION_KEY) if isinstance(session, dict) else None
    return {"store": "", "store_id": "", "terminal": "", **(saved or {})}


def _remember(request: Request[Any, Any, Any], store: str, store_id: str, terminal: str) -> None:
    session = request.scope.get("session")
    if isinstance(session, dict):
        session[SESSION_KEY] = {"store": store, "store_id": store_id, "terminal": terminal}


def _store_id(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text) if text else None
    except ValueError:
        raise FormInvalid("store_id", N_("Choose a store from the list.")) from None


async def _choices(request: Request[Any, Any, Any], db: DbSession) -> list[Any]:
    """The stores this user may pick: a clerk's own active stores, else every active store."""
    caller = _caller(request)
    if caller.clerk and caller.user_id is not None:
        return [s for s in await stores_of_user(db, caller.user_id) if s.active]
    return await list_stores(db, active_only=True)


class RedeemController(Controller):
    path = "/redeem"
    guards = [require_permission("redemptions.redeem")]
    dependencies = {"db": Provide(provide_db)}

    async def _page(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        *,
        result: dict[str, Any] | None = None,
        form: dict[str, str] | None = None,
        need_pin: bool = False,
        need_amount: bool = False,
        status: int = 200,
    ) -> Response[str]:
        caller = _caller(request)
        mine = caller.user_id if caller.clerk else None  # a clerk sees their own redemptions only
        recent = await records.list_redemptions(db, limit=RECENT, user_id=mine)
        names = await find_products(db, {r.product_id for r in recent.items})
        ctx = await shell(request, db)
        place = _place(request)
        choices = await _choices(request, db)
        if len(choices) == 1:
            place["store_id"] = str(choices[0].id)
        ctx.update(
            active="redeem",
            store_choices=choices,
            clerk=caller.clerk,
            result=result,
            form={"code": "", "pin": "", "amount": "", **place, **(form or {})},
            need_pin=need_pin,
            need_amount=need_amount,
            recent=recent.items,
            products=names,
            window=(await records.get_settings(db)).rollback_window_minutes,
            max_window=MAX_ROLLBACK_WINDOW_MINUTES,
            now=utcnow(),
        )
        return render(request, "console/redemption/redeem.html", ctx, status=status)

    @get("/")
    async def scan(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        """The scan page: the code input has the focus, ready for the scanner."""
        return await self._page(request, db)

    # long: the scan form's three outcomes (checked, redeemed, refused) answered on the one page, in order
    @post("/")
    async def submit(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        """Redeem (or only check, with ``action=validate``) the scanned code; show the result big."""
        raw = await read_form(request)
        form = values(raw, "code", "pin", "amount", "store", "store_id", "terminal", "action", keep=("pin",))
        saved = _place(request)  # a form without the fields (not the page's own) keeps the remembered place
        store = form["store"][:64] if "store" in raw else saved["store"]
        store_id = form["store_id"] if "store_id" in raw else saved["store_id"]
        terminal = form["terminal"][:64] if "terminal" in raw else saved["terminal"]
        _remember(request, store, store_id, terminal)
        kernel = request.app.state.kernel
        t = translator(request)
        keep = {"store": store, "store_id": store_id, "terminal": terminal}
        try:
            if not form["code"]:
                raise FormInvalid("code", N_("Scan or type a code."))
            amount = None
            if form["amount"]:
                try:
                    amount = yuan_to_fen(form["amount"])
                except AmountInvalid:
                    raise FormInvalid("amount", N_("Enter the amount in yuan, e.g. 12.50.")) from None
            data = RedeemIn(
                code=form["code"],
                pin=form["pin"] or None,
                amount=amount or None,
                store=store,
                store_id=_store_id(store_id),
                terminal=terminal,
            )
            if form["action"] == "validate":
                v = await checks.validate(db, kernel, data, _caller(request))
                result = {
                    "ok": True,
                    "validated": True,
                    "masked": v.masked,
                    "kind": v.kind,
                    "product": v.product_name,
                    "balance": v.balance,
                    "currency": v.currency,
                    "uses_remaining": v.uses_remaining,
                    "expires_at": v.expires_at,
                }
                # keep the code in the form so the next Enter redeems what was just checked
                return await self._page(
                    request,
                    db,
                    result=result,
                    form={**keep, "code": form["code"], "pin": form["pin"], "amount": form["amount"]},
                    need_pin=bool(form["pin"]),
                    need_amount=v.kind == "stored_value",
                )
            red = await redeem.redeem(db, kernel, data, _caller(request))
            product = await find_product(db, red.product_id)
            result = {
                "ok": True,
                "validated": False,
                "masked": masked(red.code_last4),
                "kind": red.kind,
                "product": product.name_zh,
                "balance": red.balance_after,
                "currency": red.currency,
                "amount": red.amount,
                "use_number": red.use_number,
                "max_uses": product.max_uses,
                "redemption_id": red.id,
            }
            return await self._page(request, db, result=result, form=keep)
        except (DomainError, FormInvalid) as exc:
            problem: FormProblem = problem_of(exc, t, locale_of(request))
            code = exc.code if isinstance(exc, DomainError) else "invalid"
            need_pin = code in _PIN_CODES
            need_amount = code in _AMOUNT_CODES or (isinstance(exc, FormInvalid) and exc.field == "amount")
            retry = need_pin or need_amount  # same code, one more field: keep what was scanned
            result = {
                "ok": False,
                "code": code,
                "message": problem.message,
                "extra": exc.extra if isinstance(exc, DomainError) else {},
            }
            status = exc.status if isinstance(exc, DomainError) else 422
            return await self._page(
                request,
                db,
                result=result,
                status=status,
                need_pin=need_pin,
                need_amount=need_amount,
                form={
                    **keep,
                    "code": form["code"] if retry else "",
                    "amount": form["amount"] if retry else "",
                },
            )

    @post(
        "/{redemption_id:uuid}/rollback", status_code=303, guards=[require_permission("redemptions.rollback")]
    )
    async def rollback(
        self, request: Request[Any, Any, Any], db: DbSession, redemption_id: uuid.UUID
    ) -> Any:
        """Roll a redemption back with a reason (within the tenant's window)."""
        reason = values(await read_form(request), "reason")["reason"]
        t = translator(request)
        try:
            red = await rollback.rollback(db, redemption_id, reason)
        except DomainError as exc:
            if exc.status == 404:
                raise
            return await self._page(
                request,
                db,
                status=exc.status,
                result={
                    "ok": False,
                    "code": exc.code,
                    "message": exc.detail(locale_of(request)),
                    "extra": exc.extra,
                },
            )
        flash(request, t.gettext("Redemption of %(code)s rolled back.") % {"code": masked(red.code_last4)})
        return Redirect("/console/redeem", status_code=303)

    @post("/settings", status_code=303, guards=[require_permission("redemptions.rollback")])
    async def settings(self, request: Request[Any, Any, Any], db: DbSession) -> Any:
        """Change how long after a redemption it may be rolled back."""
        text = values(await read_form(request), "rollback_window_minutes")["rollback_window_minutes"]
        t = translator(request)
        if not text.isdigit() or not 0 <= int(text) <= MAX_ROLLBACK_WINDOW_MINUTES:
            message = t.gettext(
                "The rollback window must be a whole number of minutes from 0 to %(max)s."
            ) % {"max": MAX_ROLLBACK_WINDOW_MINUTES}
            return await self._page(
                request,
                db,
                status=422,
                result={"ok": False, "code": "validation_failed", "message": message, "extra": {}},
            )
        await records.update_settings(db, int(text))
        flash(request, t.gettext("Rollback window saved."))
        return Redirect("/console/redeem", status_code=303)
