"""Tenant console "Settlements" pages (the landing page of 结算对账): every channel account's settlement per
period with its status and totals; one settlement with its lines, confirm and pay forms and the XLSX export.

Everything goes through the services behind ``/api/v1/settlements`` (:mod:`core.settlement.settlements`,
:mod:`core.settlement.settlement_export`).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect

from admin_ui.console_pages import shell
from admin_ui.forms import FormProblem, problem_of, read_form, values
from admin_ui.i18n import N_
from admin_ui.rendering import flash, locale_of, render, translator
from core.db.types import DbSession
from core.errors import DomainError
from core.settlement import settlements
from core.settlement.models import SETTLEMENT_STATUSES
from core.settlement.settlement_export import export_xlsx, settlement_lines
from tenants.guards import provide_db, require_permission

PAGE = 50
LINES_PAGE = 100
VIEW = "settlement.read"
MANAGE = "settlement.manage"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

STATUS_LABELS: dict[str, str] = {
    "open": N_("Open"),
    "reconciled": N_("Reconciled"),
    "confirmed": N_("Confirmed"),
    "paid": N_("Paid"),
}
PARTY_LABELS: dict[str, str] = {
    "channel": N_("Channel share"),
    "platform": N_("Platform share"),
    "referrer": N_("Referrer"),
    "kol": N_("KOL"),
    "tenant": N_("You (net)"),
}

assert set(STATUS_LABELS) == set(SETTLEMENT_STATUSES)


class SettlementsController(Controller):
    path = "/settlements"
    guards = [require_permission(VIEW)]
    dependencies = {"db": Provide(provide_db)}

    @get("/")
    async def index(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        account: Annotated[str | None, Parameter(required=False, max_length=40)] = None,
        settlement_status: Annotated[str | None, Parameter(query="status", required=False, max_length=20)] = None,
        period: Annotated[str | None, Parameter(required=False, max_length=10)] = None,
        cursor: Annotated[str | None, Parameter(required=False, max_length=60)] = None,
    ) -> Response[str]:
        """Settlements newest period first, filtered by account, status and period."""
        ctx = await shell(request, db)
        accounts = await settlements.channel_accounts(db)
        account_id = next((a for a, _, _ in accounts if str(a) == account), None)
        status = settlement_status if settlement_status in SETTLEMENT_STATUSES else None
        problem: FormProblem | None = None
        try:
            page = await settlements.list_settlements(db, account_id=account_id, status=status,
                                                      period=period or None, cursor=cursor or None, limit=PAGE)
        except DomainError as exc:
            problem = problem_of(exc, translator(request), locale_of(request))
            page = await settlements.list_settlements(db, account_id=account_id, status=status, limit=PAGE)
            period = ""
        ctx.update(items=page.items, next_cursor=page.next_cursor, accounts=accounts,
                   account=str(account_id) if account_id else "", status=status or "", period=period or "",
                   statuses=SETTLEMENT_STATUSES, status_labels=STATUS_LABELS, problem=problem)
        return render(request, "console/settlements/list.html", ctx)

    async def _detail(self, request: Request[Any, Any, Any], db: DbSession, account_id: uuid.UUID, period: str,
                      *, cursor: uuid.UUID | None = None, problem: FormProblem | None = None,
                      form: dict[str, str] | None = None, status: int = 200) -> Response[str]:
        ctx = await shell(request, db)
        settlement = await settlements.get_settlement(db, account_id, period)
        lines = await settlement_lines(db, account_id, period, cursor=cursor, limit=LINES_PAGE)
        ctx.update(s=settlement, lines=lines.items, next_cursor=lines.next_cursor, status_labels=STATUS_LABELS,
                   party_labels=PARTY_LABELS, problem=problem, form=form or {})
        return render(request, "console/settlements/detail.html", ctx, status=status)

    @get("/{account_id:uuid}/{period:str}")
    async def detail(self, request: Request[Any, Any, Any], db: DbSession, account_id: uuid.UUID, period: str,
                     cursor: Annotated[uuid.UUID | None, Parameter(required=False)] = None) -> Response[str]:
        """One settlement: status, totals, each party's rows, its lines; confirm, pay, export."""
        return await self._detail(request, db, account_id, period, cursor=cursor)

    @post("/{account_id:uuid}/{period:str}/confirm", status_code=303, guards=[require_permission(MANAGE)])
    async def confirm(self, request: Request[Any, Any, Any], db: DbSession, account_id: uuid.UUID,
                      period: str) -> Response[Any]:
        """Confirm (freeze and lock the period); an unreconciled one only with "confirm anyway" and a reason."""
        form = values(await read_form(request), "force", "reason")
        t = translator(request)
        try:
            await settlements.confirm(db, account_id, period, force=form["force"] == "1", reason=form["reason"])
        except DomainError as exc:
            await db.rollback()
            return await self._detail(request, db, account_id, period, form=form, status=exc.status,
                                      problem=problem_of(exc, t, locale_of(request)))
        flash(request, t.gettext("The settlement is confirmed; the period is locked."))
        return Redirect(f"/console/settlements/{account_id}/{period}", status_code=303)

    @post("/{account_id:uuid}/{period:str}/pay", status_code=303, guards=[require_permission(MANAGE)])
    async def pay(self, request: Request[Any, Any, Any], db: DbSession, account_id: uuid.UUID,
                  period: str) -> Response[Any]:
        """Record the channel's payment with its reference."""
        form = values(await read_form(request), "payment_ref")
        t = translator(request)
        try:
            await settlements.pay(db, account_id, period, form["payment_ref"])
        except DomainError as exc:
            await db.rollback()
            return await self._detail(request, db, account_id, period, form=form, status=exc.status,
                                      problem=problem_of(exc, t, locale_of(request)))
        flash(request, t.gettext("The payment is recorded."))
        return Redirect(f"/console/settlements/{account_id}/{period}", status_code=303)

    @get("/{account_id:uuid}/{period:str}/export.xlsx", media_type=XLSX)
    async def export(self, db: DbSession, account_id: uuid.UUID, period: str) -> Response[bytes]:
        """The settlement as an XLSX workbook (summary and lines)."""
        name, body = await export_xlsx(db, account_id, period)
        return Response(body, media_type=XLSX, headers={"Content-Disposition": f'attachment; filename="{name}"',
                                                        "Cache-Control": "no-store"})
