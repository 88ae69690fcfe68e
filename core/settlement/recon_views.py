"""Reading reconciliation runs and their items (API and console), and the bodies they accept.

Money is integer fen; an item's ``diff_fen`` is theirs less ours.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.context import current_actor
from core.connectors.models import ConnectorAccount
from core.db.paging import keyset_page
from core.db.session import get_scoped
from core.errors import FieldError, NotFound, ValidationFailed
from core.settlement.models import RECON_CLASSES, ReconItem, ReconRun
from core.settlement.reconcile import check_period

__all__ = [
    "MAX_PAGE", "ReconItemOut", "ReconItemPage", "ReconRunIn", "ReconRunOut", "ReconRunPage", "ResolveIn",
    "actor_label", "get_item", "get_run", "item_out", "list_items", "list_runs", "run_out",
]

MAX_PAGE = 200
ITEM_STATUSES = ("ok", "open", "resolved")
Period = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="A month, YYYY-MM.")]


class ReconRunIn(msgspec.Struct, forbid_unknown_fields=True):
    """Reconcile a channel account's period."""

    account_id: uuid.UUID
    period: Period


class ResolveIn(msgspec.Struct, forbid_unknown_fields=True):
    """How a person resolves an open item, and why (required)."""

    resolution: Literal["accept_theirs", "accept_ours", "adjustment"]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    amount_fen: Annotated[int, msgspec.Meta(ge=-(10**12), le=10**12)] | None = None


class ReconRunOut(msgspec.Struct):
    id: uuid.UUID
    account_id: uuid.UUID
    account_name: str
    period: str
    status: str
    counts: dict[str, int]
    started_at: dt.datetime
    finished_at: dt.datetime | None
    started_by: str


class ReconRunPage(msgspec.Struct):
    items: list[ReconRunOut]
    next_cursor: uuid.UUID | None = None


class ReconItemOut(msgspec.Struct):
    id: uuid.UUID
    run_id: uuid.UUID
    account_id: uuid.UUID
    period: str
    klass: str
    kind: str
    status: str
    statement_line_id: uuid.UUID | None
    order_line_id: uuid.UUID | None
    channel_order_id: str
    channel_line_id: str
    their_amount_fen: int | None
    our_amount_fen: int | None
    diff_fen: int
    their_commission_fen: int | None
    our_commission_fen: int | None
    resolution: str
    reason: str
    adjustment_fen: int
    resolved_by: str
    resolved_at: dt.datetime | None


class ReconItemPage(msgspec.Struct):
    items: list[ReconItemOut]
    next_cursor: uuid.UUID | None = None


def actor_label() -> str:
    """Who is acting, as stored in ``started_by`` / ``resolved_by`` (``user:<id>``, ``client:<id>`` …)."""
    actor = current_actor()
    return f"{actor.type}:{actor.id}"


async def _names(session: AsyncSession) -> dict[uuid.UUID, str]:
    rows = await session.execute(select(ConnectorAccount.id, ConnectorAccount.name))
    return {r.id: r.name for r in rows}


def run_out(run: ReconRun, names: dict[uuid.UUID, str]) -> ReconRunOut:
    return ReconRunOut(
        id=run.id, account_id=run.account_id, account_name=names.get(run.account_id, ""), period=run.period,
        status=run.status, counts={k: int(v) for k, v in (run.counts or {}).items()}, started_at=run.started_at,
        finished_at=run.finished_at, started_by=run.started_by)


def item_out(i: ReconItem) -> ReconItemOut:
    return ReconItemOut(
        id=i.id, run_id=i.run_id, account_id=i.account_id, period=i.period, klass=i.klass, kind=i.kind,
        status=i.status, statement_line_id=i.statement_line_id, order_line_id=i.order_line_id,
        channel_order_id=i.channel_order_id, channel_line_id=i.channel_line_id,
        their_amount_fen=i.their_amount_fen, our_amount_fen=i.our_amount_fen, diff_fen=i.diff_fen,
        their_commission_fen=i.their_commission_fen, our_commission_fen=i.our_commission_fen,
        resolution=i.resolution, reason=i.reason, adjustment_fen=i.adjustment_fen, resolved_by=i.resolved_by,
        resolved_at=i.resolved_at)


async def list_runs(session: AsyncSession, *, account_id: uuid.UUID | None = None, period: str | None = None,
                    cursor: uuid.UUID | None = None, limit: int = 50) -> ReconRunPage:
    """Runs newest first, filtered by account and period."""
    stmt = select(ReconRun)
    if account_id is not None:
        stmt = stmt.where(ReconRun.account_id == account_id)
    if period:
        stmt = stmt.where(ReconRun.period == check_period(period))
    page = await keyset_page(session, stmt, ReconRun.id, cursor=cursor, limit=min(limit, MAX_PAGE))
    names = await _names(session)
    return ReconRunPage([run_out(r, names) for r in page.items], page.next_cursor)


async def get_run(session: AsyncSession, run_id: uuid.UUID) -> ReconRunOut:
    """One run with its counts per class; ``404 recon_run_not_found``."""
    run = await get_scoped(session, ReconRun, run_id)
    if run is None:
        raise NotFound("Reconciliation run not found", "对账记录不存在", code="recon_run_not_found")
    return run_out(run, await _names(session))


async def get_item(session: AsyncSession, item_id: uuid.UUID) -> ReconItemOut:
    """One item; ``404 recon_item_not_found``."""
    item = await get_scoped(session, ReconItem, item_id)
    if item is None:
        raise NotFound("Reconciliation item not found", "对账条目不存在", code="recon_item_not_found")
    return item_out(item)


async def list_items(session: AsyncSession, run_id: uuid.UUID, *, klass: str | None = None,
                     status: str | None = None, cursor: uuid.UUID | None = None, limit: int = 50) -> ReconItemPage:
    """A run's items, filtered by class and status (``ok``, ``open``, ``resolved``); ``404`` for an unknown run."""
    await get_run(session, run_id)
    errors = []
    if klass is not None and klass not in RECON_CLASSES:
        errors.append(FieldError(field="class", message=f"one of {', '.join(RECON_CLASSES)}", code="unknown"))
    if status is not None and status not in ITEM_STATUSES:
        errors.append(FieldError(field="status", message=f"one of {', '.join(ITEM_STATUSES)}", code="unknown"))
    if errors:
        raise ValidationFailed("Unknown filter value", "未知的筛选值", errors=errors)
    stmt = select(ReconItem).where(ReconItem.run_id == run_id)
    if klass is not None:
        stmt = stmt.where(ReconItem.klass == klass)
    if status is not None:
        stmt = stmt.where(ReconItem.status == status)
    page = await keyset_page(session, stmt, ReconItem.id, cursor=cursor, limit=min(limit, MAX_PAGE))
    return ReconItemPage([item_out(i) for i in page.items], page.next_cursor)


async def account_names(session: AsyncSession) -> list[tuple[uuid.UUID, str]]:
    """The tenant's sales-channel accounts (id, name), by name: what can be reconciled."""
    rows = await session.execute(
        select(ConnectorAccount.id, ConnectorAccount.name).where(ConnectorAccount.kind == "sales_channel")
        .order_by(ConnectorAccount.name))
    return [(r.id, r.name) for r in rows]
