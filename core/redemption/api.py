"""Redemption API under ``/api/v1``: validate, redeem, list, roll back, stored-value ledgers, settings."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, post, put
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import FieldError, ValidationFailed
from core.redemption import accounts, checks, records, redeem, reports, rollback
from core.redemption.models import REDEMPTION_STATUSES
from core.redemption.schemas import (
    LedgerOut,
    RedeemIn,
    RedemptionOut,
    RedemptionPage,
    RedemptionSettingsIn,
    RedemptionSettingsOut,
    RedemptionSummary,
    RollbackIn,
    ValidationOut,
)
from tenants.guards import principal_of, provide_db, require_scope
from tenants.schemas import Principal

MAX_PAGE = 200


def caller_of(request: Request[Any, Any, Any]) -> checks.Caller:
    """The API client or console user behind the request, and its address (for the risk rules)."""
    p: Principal | None = principal_of(request)
    ip = request.client.host if request.client else None
    if p is not None and p.kind == "client":
        return checks.Caller(client_id=p.client_pk, ip=ip)
    if p is not None and p.kind == "user":
        return checks.Caller(user_id=uuid.UUID(p.subject_id), ip=ip)
    return checks.Caller(ip=ip)


class RedemptionController(Controller):
    path = "/api/v1"
    tags = ["redemptions"]
    dependencies = {"db": Provide(provide_db)}

    @post("/redemptions/validate", status_code=200, guards=[require_scope("redemptions:write")])
    async def validate(
        self, request: Request[Any, Any, Any], db: AsyncSession, data: RedeemIn
    ) -> ValidationOut:
        """Check that a code (and PIN) may be redeemed now — balance or uses left — without redeeming it."""
        return await checks.validate(db, request.app.state.kernel, data, caller_of(request))

    @post("/redemptions", status_code=201, guards=[require_scope("redemptions:write")])
    async def redeem(
        self, request: Request[Any, Any, Any], db: AsyncSession, data: RedeemIn
    ) -> RedemptionOut:
        """Redeem exactly once; a concurrent or repeated redemption gets ``409 already_redeemed``.

        ``member_id`` or ``grant_item_id`` pick whose unit of a shared (reusable) code is used.
        """
        return await redeem.redeem_out(db, request.app.state.kernel, data, caller_of(request))

    @get("/redemptions", guards=[require_scope("redemptions:read")])
    async def list_redemptions(
        self,
        db: AsyncSession,
        last4: Annotated[str | None, Parameter(max_length=4)] = None,
        store: Annotated[str | None, Parameter(max_length=64)] = None,
        terminal: Annotated[str | None, Parameter(max_length=64)] = None,
        since: dt.datetime | None = None,
        redemption_status: Annotated[str | None, Parameter(query="status")] = None,
        store_id: uuid.UUID | None = None,
        user_id: uuid.UUID | None = None,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = 50,
    ) -> RedemptionPage:
        """Redemptions newest first; filter by the code's last four characters, store (its text, or the
        record: ``store_id``), terminal, since, status, or the console user who redeemed (``user_id``)."""
        if redemption_status is not None and redemption_status not in REDEMPTION_STATUSES:
            raise ValidationFailed(
                "status must be redeemed or rolled_back",
                "status 只能是 redeemed 或 rolled_back",
                errors=[FieldError(field="status", message="unknown", code="invalid_choice")],
            )
        return await records.list_redemptions(
            db,
            last4=last4,
            store=store,
            terminal=terminal,
            since=since,
            status=redemption_status,
            store_id=store_id,
            user_id=user_id,
            cursor=cursor,
            limit=limit,
        )

    @get("/redemptions/summary", guards=[require_scope("redemptions:read")])
    async def summary(
        self,
        db: AsyncSession,
        first: Annotated[dt.date, Parameter(query="from")],
        last: Annotated[dt.date, Parameter(query="to")],
        store_id: uuid.UUID | None = None,
        user_id: uuid.UUID | None = None,
    ) -> RedemptionSummary:
        """Counts and value (integer fen) of the redemptions from ``from`` to ``to`` (dates, inclusive, in
        the tenant's time zone; at most 366 days) per store and per console user (clerk)."""
        return await reports.summary(db, first, last, store_id=store_id, user_id=user_id)

    @get("/redemptions/{redemption_id:uuid}", guards=[require_scope("redemptions:read")])
    async def get_redemption(self, db: AsyncSession, redemption_id: uuid.UUID) -> RedemptionOut:
        red = await records.find_redemption(db, redemption_id)
        return records.redemption_out(red, (await records.get_settings(db)).rollback_window_minutes)

    @post(
        "/redemptions/{redemption_id:uuid}/rollback",
        status_code=200,
        guards=[require_scope("redemptions:write")],
    )
    async def rollback(self, db: AsyncSession, redemption_id: uuid.UUID, data: RollbackIn) -> RedemptionOut:
        """Undo a redemption within the tenant's window (``409 rollback_window_passed`` after it)."""
        red = await rollback.rollback(db, redemption_id, data.reason)
        return records.redemption_out(red, (await records.get_settings(db)).rollback_window_minutes)

    @get("/stored-value/{code_id:uuid}/ledger", guards=[require_scope("redemptions:read")])
    async def ledger(self, db: AsyncSession, code_id: uuid.UUID) -> LedgerOut:
        """A stored-value card's balance and its movements (opening, spends, rolled-back spends)."""
        return await accounts.stored_value_ledger(db, code_id)

    @get("/redemption-settings", guards=[require_scope("redemptions:read")])
    async def get_settings(self, db: AsyncSession) -> RedemptionSettingsOut:
        return RedemptionSettingsOut((await records.get_settings(db)).rollback_window_minutes)

    @put("/redemption-settings", guards=[require_scope("redemptions:write")])
    async def update_settings(self, db: AsyncSession, data: RedemptionSettingsIn) -> RedemptionSettingsOut:
        """Change the rollback window (minutes, 0 = no rollback, at most 7 days)."""
        row = await records.update_settings(db, data.rollback_window_minutes)
        return RedemptionSettingsOut(row.rollback_window_minutes)
