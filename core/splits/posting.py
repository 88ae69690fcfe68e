"""Posting the split ledger rows of a channel order line's events, in the event's transaction.

The channel orders call these with plain facts (this package never imports them): the sale when a line's
codes are allocated, a redemption or its rollback for one code, a refund or cancellation of units. Every
write goes through :func:`core.splits.ledger.append`, so an event posted twice is written once.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.splits import engine
from core.splits.engine import LineFacts, Row
from core.splits.ledger import EntryIn, append
from core.splits.models import SplitEntry
from core.splits.terms import SplitTerms

__all__ = ["LinePosting", "post_redemption", "post_refund", "post_rollback", "post_sale", "sale_entries"]


@dataclass(frozen=True, slots=True)
class LinePosting:
    """A line, its order and the rule version it recorded."""

    account_id: uuid.UUID
    order_id: uuid.UUID
    line_id: uuid.UUID
    rule_id: uuid.UUID | None
    terms: SplitTerms
    facts: LineFacts


def _entries(line: LinePosting, rows: Sequence[Row], event: str, event_ref: str, at: dt.datetime) -> list[EntryIn]:
    return [
        EntryIn(account_id=line.account_id, event=event, event_ref=event_ref, party=r.party,
                amount_fen=r.amount_fen, occurred_at=at, line_id=line.line_id, order_id=line.order_id,
                rule_id=line.rule_id, component=r.component, party_ref=r.party_ref)
        for r in rows
    ]


def sale_entries(line: LinePosting, at: dt.datetime) -> list[EntryIn]:
    """The sale rows of a line as ledger entries (``event_ref`` is the line id)."""
    return _entries(line, engine.sale_rows(line.terms, line.facts), "sale", str(line.line_id), at)


async def post_sale(session: AsyncSession, line: LinePosting, at: dt.datetime) -> int:
    """Write a line's sale rows (once); the number of rows written."""
    return await append(session, sale_entries(line, at))


async def post_redemption(
    session: AsyncSession, line: LinePosting, *, event_ref: str, index: int, units: int, at: dt.datetime
) -> int:
    """Write the rows of the redemption of unit ``index`` of ``units`` (``redeemed`` components only)."""
    rows = engine.redemption_rows(line.terms, line.facts, index, units)
    return await append(session, _entries(line, rows, "redemption", event_ref, at))


async def _rows_of(session: AsyncSession, line_id: uuid.UUID, event: str, event_ref: str | None) -> list[SplitEntry]:
    stmt = select(SplitEntry).where(SplitEntry.line_id == line_id, SplitEntry.event == event)
    if event_ref is not None:
        stmt = stmt.where(SplitEntry.event_ref == event_ref)
    return list((await session.execute(stmt.order_by(SplitEntry.component, SplitEntry.party))).scalars())


async def post_rollback(session: AsyncSession, line_id: uuid.UUID, event_ref: str, at: dt.datetime) -> int:
    """Reverse exactly the rows a redemption (``event_ref``) wrote; nothing when it wrote none."""
    written = await _rows_of(session, line_id, "redemption", event_ref)
    return await append(session, [
        EntryIn(account_id=e.account_id, event="redemption_rollback", event_ref=event_ref, party=e.party,
                amount_fen=-e.amount_fen, occurred_at=at, line_id=e.line_id, order_id=e.order_id,
                rule_id=e.rule_id, component=e.component, party_ref=e.party_ref)
        for e in written
    ])


async def post_refund(
    session: AsyncSession, line_id: uuid.UUID, *, quantity: int, before: int, units: int, event: str,
    event_ref: str, at: dt.datetime,
) -> int:
    """Reverse ``units`` more refunded units (``before`` refunded already) of the sale rows the line wrote
    (``event`` ``refund`` or ``cancellation``)."""
    if units <= 0:
        return 0
    sale = await _rows_of(session, line_id, "sale", None)
    if not sale:
        return 0  # a line sold before the split ledger existed
    first = sale[0]
    rows = engine.refund_rows([Row(e.component, e.party, e.amount_fen, e.party_ref) for e in sale],
                              quantity, before, units)
    return await append(session, [
        EntryIn(account_id=first.account_id, event=event, event_ref=event_ref, party=r.party,
                amount_fen=r.amount_fen, occurred_at=at, line_id=line_id, order_id=first.order_id,
                rule_id=first.rule_id, component=r.component, party_ref=r.party_ref)
        for r in rows
    ])
