"""Settlements API: ``/api/v1/settlements`` — list (by account, status, period), read with live totals, the
lines of a period, confirm, record the payment, and the XLSX export; ``/api/v1/settlement-balances`` — what
each channel account owes by settlement status."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.settlement import settlements
from core.settlement.settlement_export import MAX_PAGE as LINES_MAX_PAGE
from core.settlement.settlement_export import export_xlsx, settlement_lines
from core.settlement.settlement_schemas import (
    AccountBalance,
    ConfirmIn,
    PayIn,
    SettlementLinePage,
    SettlementOut,
    SettlementPage,
)
from tenants.guards import provide_db, require_scope

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class SettlementController(Controller):
    path = "/api/v1/settlements"
    tags = ["settlements"]
    dependencies = {"db": Provide(provide_db)}

    @get("/", guards=[require_scope("settlement:read")])
    async def list_settlements(
        self,
        db: AsyncSession,
        account_id: Annotated[uuid.UUID | None, Parameter(query="account")] = None,
        settlement_status: Annotated[str | None, Parameter(query="status", max_length=20)] = None,
        period: Annotated[str | None, Parameter(max_length=7)] = None,
        cursor: Annotated[str | None, Parameter(max_length=60)] = None,
        limit: Annotated[int, Parameter(ge=1, le=settlements.MAX_PAGE)] = 50,
    ) -> SettlementPage:
        """Settlements newest period first (every account and period with ledger rows), with their totals."""
        return await settlements.list_settlements(db, account_id=account_id, status=settlement_status,
                                                  period=period, cursor=cursor, limit=limit)

    @get("/{account_id:uuid}/{period:str}", guards=[require_scope("settlement:read")])
    async def get_settlement(self, db: AsyncSession, account_id: uuid.UUID, period: str) -> SettlementOut:
        """One account's settlement of a period (``YYYY-MM``): status, totals, each party's rows."""
        return await settlements.get_settlement(db, account_id, period)

    @get("/{account_id:uuid}/{period:str}/lines", guards=[require_scope("settlement:read")])
    async def lines(
        self,
        db: AsyncSession,
        account_id: uuid.UUID,
        period: str,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=LINES_MAX_PAGE)] = 100,
    ) -> SettlementLinePage:
        """The period's order lines: gross, each party's share, refunds, adjustments, net due (fen)."""
        return await settlement_lines(db, account_id, period, cursor=cursor, limit=limit)

    @post("/{account_id:uuid}/{period:str}/confirm", status_code=200, guards=[require_scope("settlement:write")])
    async def confirm(self, db: AsyncSession, account_id: uuid.UUID, period: str, data: ConfirmIn) -> SettlementOut:
        """Freeze the totals and lock the period. ``409 settlement_not_reconciled`` unless ``force`` + ``reason``."""
        return await settlements.confirm(db, account_id, period, force=data.force, reason=data.reason)

    @post("/{account_id:uuid}/{period:str}/pay", status_code=200, guards=[require_scope("settlement:write")])
    async def pay(self, db: AsyncSession, account_id: uuid.UUID, period: str, data: PayIn) -> SettlementOut:
        """Record the payment (reference required) of a confirmed settlement. ``409 settlement_not_confirmed``."""
        return await settlements.pay(db, account_id, period, data.payment_ref, data.paid_at)

    @get("/{account_id:uuid}/{period:str}/export.xlsx", guards=[require_scope("settlement:read")], media_type=XLSX)
    async def export(self, db: AsyncSession, account_id: uuid.UUID, period: str) -> Response[bytes]:
        """The settlement as XLSX: a ``Summary`` sheet and a ``Lines`` sheet (amounts in fen)."""
        name, body = await export_xlsx(db, account_id, period)
        return Response(body, media_type=XLSX, headers={"Content-Disposition": f'attachment; filename="{name}"',
                                                        "Cache-Control": "no-store"})


class SettlementBalanceController(Controller):
    path = "/api/v1/settlement-balances"
    tags = ["settlements"]
    dependencies = {"db": Provide(provide_db)}

    @get("/", guards=[require_scope("settlement:read")])
    async def balances(
        self, db: AsyncSession, account_id: Annotated[uuid.UUID | None, Parameter(query="account")] = None
    ) -> list[AccountBalance]:
        """Per channel account: net due of unconfirmed periods, of confirmed unpaid ones, and of paid ones."""
        return await settlements.balances(db, account_id)
