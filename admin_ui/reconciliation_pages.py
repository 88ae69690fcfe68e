"""Tenant console "Reconciliation" page (结算对账 › 对账): pick a channel account and a period and reconcile it;
the counts per class of a run, its items filtered by class (both amounts and the difference), and a resolve
form with a required reason on every open item.

Everything goes through the services behind ``/api/v1/reconciliation-runs``
(:mod:`core.settlement.recon_views`, :func:`core.settlement.reconcile.reconcile`,
:func:`core.settlement.resolutions.resolve_item`).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect

from admin_ui.console_pages import shell
from admin_ui.forms import FormInvalid, FormProblem, problem_of, read_form, values
from admin_ui.i18n import N_
from admin_ui.money import AmountInvalid, yuan_to_fen
from admin_ui.rendering import flash, locale_of, render, translator
from core.db.base import utcnow
from core.db.types import DbSession
from core.errors import DomainError
from core.settlement import recon_views as views
from core.settlement.models import RECON_CLASSES, RESOLUTIONS
from core.settlement.reconcile import reconcile
from core.settlement.resolutions import resolve_item
from core.splits.ledger import is_period, period_of
from tenants.guards import provide_db, require_permission

PAGE = 50
VIEW = "settlement.read"
MANAGE = "settlement.manage"

CLASS_LABELS: dict[str, str] = {
    "matched": N_("Matched"),
    "amount_mismatch": N_("Amount differs"),
    "missing_theirs": N_("Missing on their statement"),
    "missing_ours": N_("Not in our orders"),
    "duplicate": N_("Duplicate line"),
    "rate_differs": N_("Commission differs from the rule"),
}
KIND_LABELS: dict[str, str] = {
    "sale": N_("Sale"), "refund": N_("Refund"), "commission": N_("Commission"), "adjustment": N_("Adjustment"),
}
RESOLUTION_LABELS: dict[str, str] = {
    "accept_theirs": N_("Accept theirs (adjust our rows)"),
    "accept_ours": N_("Accept ours (claim the difference)"),
    "adjustment": N_("Adjustment of a given amount"),
}
ITEM_STATUS_LABELS: dict[str, str] = {"ok": N_("OK"), "open": N_("Open"), "resolved": N_("Resolved")}

assert set(CLASS_LABELS) == set(RECON_CLASSES) and set(RESOLUTION_LABELS) == set(RESOLUTIONS)


def _labels() -> dict[str, Any]:
    return {"class_labels": CLASS_LABELS, "kind_labels": KIND_LABELS, "resolution_labels": RESOLUTION_LABELS,
            "item_status_labels": ITEM_STATUS_LABELS, "classes": RECON_CLASSES}


def _signed_fen(text: str) -> int:
    """``"-12.50"`` → ``-1250``: an adjustment may go either way."""
    text = text.strip()
    negative = text.startswith("-")
    fen = yuan_to_fen(text[1:] if negative else text)
    return -fen if negative else fen


class ReconciliationPages(Controller):
    path = "/reconciliation"
    guards = [require_permission(VIEW)]
    dependencies = {"db": Provide(provide_db)}

    async def _page(self, request: Request[Any, Any, Any], db: DbSession, *, account: uuid.UUID | None,
                    period: str, run_id: uuid.UUID | None, klass: str | None, cursor: uuid.UUID | None,
                    problem: FormProblem | None = None, problem_item: uuid.UUID | None = None,
                    status: int = 200) -> Response[str]:
        ctx = await shell(request, db)
        accounts = await views.account_names(db)
        period = period if is_period(period) else period_of(utcnow(), ctx["tz"])
        run = None
        if run_id is not None:
            run = await views.get_run(db, run_id)
        else:
            latest = await views.list_runs(db, account_id=account, period=period, limit=1) if account else None
            run = latest.items[0] if latest and latest.items else None
        klass = klass if klass in RECON_CLASSES else None
        items = await views.list_items(db, run.id, klass=klass, cursor=cursor, limit=PAGE) if run else None
        ctx.update(
            tab="reconciliation", accounts=accounts, account=str(run.account_id if run else account or ""),
            period=run.period if run else period, run=run, klass=klass or "",
            items=items.items if items else [], next_cursor=items.next_cursor if items else None,
            recent=(await views.list_runs(db, limit=10)).items, problem=problem,
            problem_item=str(problem_item or ""), **_labels())
        return render(request, "console/reconciliation/page.html", ctx, status=status)

    @get("/")
    async def page(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        account: Annotated[uuid.UUID | None, Parameter(required=False)] = None,
        period: Annotated[str, Parameter(required=False, max_length=7)] = "",
        run: Annotated[uuid.UUID | None, Parameter(required=False)] = None,
        klass: Annotated[str | None, Parameter(query="class", required=False, max_length=20)] = None,
        cursor: Annotated[uuid.UUID | None, Parameter(required=False)] = None,
    ) -> Response[str]:
        """The run form, recent runs, and one run's counts and items (by class)."""
        return await self._page(request, db, account=account, period=period, run_id=run, klass=klass,
                                cursor=cursor)

    @post("/runs", status_code=303, guards=[require_permission(MANAGE)])
    async def start(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        """Reconcile the chosen account's period now."""
        t = translator(request)
        form = values(await read_form(request), "account", "period")
        try:
            try:
                account = uuid.UUID(form["account"])
            except ValueError:
                raise FormInvalid("account", N_("Choose a channel account.")) from None
            run = await reconcile(db, account, form["period"], by=views.actor_label())
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            status = exc.status if isinstance(exc, DomainError) else 422
            return await self._page(request, db, account=None, period=form["period"], run_id=None, klass=None,
                                    cursor=None, problem=problem_of(exc, t, locale_of(request)), status=status)
        flash(request, t.gettext("Reconciled: %(open)s item(s) to look at.") % {"open": run.counts.get("open", 0)})
        return Redirect(f"/console/reconciliation?{urlencode({'run': str(run.id)})}", status_code=303)

    @post("/items/{item_id:uuid}/resolve", status_code=303, guards=[require_permission(MANAGE)])
    async def resolve(self, request: Request[Any, Any, Any], db: DbSession, item_id: uuid.UUID) -> Response[Any]:
        """Resolve an open item with a reason (and an amount for an adjustment)."""
        t = translator(request)
        form = values(await read_form(request), "resolution", "reason", "amount", "run", "class")
        run_id = uuid.UUID(form["run"]) if _is_uuid(form["run"]) else None
        try:
            amount = None
            if form["resolution"] == "adjustment":
                try:
                    amount = _signed_fen(form["amount"])
                except AmountInvalid:
                    raise FormInvalid("amount_fen", N_("Type the amount in yuan, e.g. 12.50 or -3.20.")) from None
            await resolve_item(db, item_id, form["resolution"], form["reason"], amount, by=views.actor_label())
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            status = exc.status if isinstance(exc, DomainError) else 422
            return await self._page(request, db, account=None, period="", run_id=run_id, klass=form["class"] or None,
                                    cursor=None, problem=problem_of(exc, t, locale_of(request)),
                                    problem_item=item_id, status=status)
        flash(request, t.gettext("The item was resolved."))
        query = {"run": form["run"]} if run_id else {}
        if form["class"]:
            query["class"] = form["class"]
        return Redirect(f"/console/reconciliation?{urlencode(query)}", status_code=303)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
