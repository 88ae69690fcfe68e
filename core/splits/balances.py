"""Balances derived from the split ledger (sums of rows, in SQL): per party and period of an account, and
per party of one order line; and the ledger's rows, filtered and paged."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.paging import Page, keyset_page
from core.errors import FieldError, ValidationFailed
from core.splits import ledger
from core.splits.models import ENTRY_EVENTS, SplitEntry

__all__ = ["Balance", "check_period", "line_balances", "list_entries", "period_balances"]



def check_period(period: str | None) -> None:
    """``422 period_invalid`` unless ``period`` is ``YYYY-MM`` (or absent)."""
    if period is not None:
        ledger.check_period(period)


class Balance:
    """A sum of ledger rows: ``amount_fen`` of ``party`` in ``period`` of ``account_id`` (``rows`` rows)."""

    __slots__ = ("account_id", "amount_fen", "party", "period", "rows")

    def __init__(self, account_id: uuid.UUID, period: str, party: str, amount_fen: int, rows: int) -> None:
        self.account_id, self.period, self.party, self.amount_fen, self.rows = (
            account_id, period, party, amount_fen, rows)


async def period_balances(
    session: AsyncSession, *, account_id: uuid.UUID | None = None, period: str | None = None
) -> list[Balance]:
    """Per account, period and party: the sum of the rows (by account, period, party)."""
    check_period(period)
    stmt = select(SplitEntry.account_id, SplitEntry.period, SplitEntry.party,
                  func.sum(SplitEntry.amount_fen), func.count())
    if account_id is not None:
        stmt = stmt.where(SplitEntry.account_id == account_id)
    if period is not None:
        stmt = stmt.where(SplitEntry.period == period)
    stmt = stmt.group_by(SplitEntry.account_id, SplitEntry.period, SplitEntry.party).order_by(
        SplitEntry.period.desc(), SplitEntry.account_id, SplitEntry.party)
    return [Balance(a, p, party, int(total or 0), int(n)) for a, p, party, total, n in (await session.execute(stmt))]


async def line_balances(session: AsyncSession, line_id: uuid.UUID) -> dict[str, int]:
    """Per party: the sum of one order line's rows."""
    rows = await session.execute(
        select(SplitEntry.party, func.sum(SplitEntry.amount_fen)).where(SplitEntry.line_id == line_id)
        .group_by(SplitEntry.party)
    )
    return {party: int(total or 0) for party, total in rows}


async def list_entries(
    session: AsyncSession, *, account_id: uuid.UUID | None = None, period: str | None = None,
    line_id: uuid.UUID | None = None, order_id: uuid.UUID | None = None, event: str | None = None,
    cursor: uuid.UUID | None = None, limit: int = 50,
) -> Page[SplitEntry, uuid.UUID]:
    """Ledger rows newest first, filtered by account, period, line, order and event."""
    check_period(period)
    if event is not None and event not in ENTRY_EVENTS:
        raise ValidationFailed(f"Unknown event {event!r}", f"未知的事件 {event!r}",
                               errors=[FieldError(field="event", message="unknown", code="unknown")])
    stmt = select(SplitEntry)
    if account_id is not None:
        stmt = stmt.where(SplitEntry.account_id == account_id)
    if period is not None:
        stmt = stmt.where(SplitEntry.period == period)
    if line_id is not None:
        stmt = stmt.where(SplitEntry.line_id == line_id)
    if order_id is not None:
        stmt = stmt.where(SplitEntry.order_id == order_id)
    if event is not None:
        stmt = stmt.where(SplitEntry.event == event)
    return await keyset_page(session, stmt, SplitEntry.id, cursor=cursor, limit=limit)
