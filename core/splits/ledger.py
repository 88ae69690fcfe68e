"""Writing the split ledger, and the periods its rows land in.

Everything that writes ledger rows (sale, redemption, refund, reconciliation adjustments) goes through
:func:`append`, inside the transaction of the event that causes them. Rows are keyed by
``(event, event_ref, line_id, component, party)``: writing the same event twice writes nothing the second
time (a redelivered message, a retried job).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
import zoneinfo
from collections.abc import Iterable, Sequence

import msgspec
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.ids import new_id
from core.errors import FieldError, ValidationFailed
from core.splits.models import LedgerPeriod, SplitEntry
from tenants.models import Tenant

__all__ = [
    "EntryIn", "append", "check_period", "entry_period", "is_locked", "is_period", "lock_period", "next_period", "period_of",
]

_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class EntryIn(msgspec.Struct, frozen=True, kw_only=True):
    """A ledger row to write (see :class:`core.splits.models.SplitEntry`)."""

    account_id: uuid.UUID
    event: str
    event_ref: str
    party: str
    amount_fen: int
    occurred_at: dt.datetime
    line_id: uuid.UUID | None = None
    order_id: uuid.UUID | None = None
    rule_id: uuid.UUID | None = None
    component: str = ""
    party_ref: str = ""


def is_period(period: str | None) -> bool:
    """Whether ``period`` is a month written ``YYYY-MM``."""
    return bool(_PERIOD.match(period or ""))


def check_period(period: str, code: str = "period_invalid") -> str:
    """``period`` if it is a month written ``YYYY-MM``; else ``422`` with ``code``."""
    if not is_period(period):
        raise ValidationFailed(
            f"A period is a month written YYYY-MM, not {period[:20]!r}",
            f"账期应为 YYYY-MM 格式的月份，而不是 {period[:20]!r}",
            code=code, errors=[FieldError(field="period", message="YYYY-MM", code="invalid")],
        )
    return period


def period_of(at: dt.datetime, zone: str) -> str:
    """The period (``YYYY-MM``) of an instant in the tenant's zone."""
    return at.astimezone(zoneinfo.ZoneInfo(zone)).strftime("%Y-%m")


def next_period(period: str) -> str:
    """The period after ``period`` (``2026-12`` → ``2027-01``)."""
    year, month = int(period[:4]), int(period[5:7])
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


async def tenant_zone(session: AsyncSession) -> str:
    """The tenant's time zone (periods are calendar months there)."""
    return await session.scalar(select(Tenant.timezone).where(Tenant.id == require_tenant())) or "UTC"


async def is_locked(session: AsyncSession, account_id: uuid.UUID, period: str) -> bool:
    """Whether ``period`` of the account is locked (its settlement confirmed)."""
    found = await session.scalar(
        select(LedgerPeriod.id).where(LedgerPeriod.account_id == account_id, LedgerPeriod.period == period)
    )
    return found is not None


async def _guard(session: AsyncSession, account_id: uuid.UUID, period: str, *, exclusive: bool) -> None:
    """On PostgreSQL, a transaction-scoped advisory lock on one account's period: writers of ledger rows
    hold it shared, confirming a period holds it exclusive. A confirmation therefore waits for rows being
    written into the period to commit (its totals include them), and a row written after it waits for the
    confirmation to commit, then sees the period locked and moves on to the next one."""
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite has one writer at a time: the race cannot happen
    digest = hashlib.sha256(f"ledger:{require_tenant()}:{account_id}:{period}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    lock = func.pg_advisory_xact_lock if exclusive else func.pg_advisory_xact_lock_shared
    await session.execute(select(lock(key)))


async def entry_period(session: AsyncSession, account_id: uuid.UUID, at: dt.datetime, zone: str | None = None) -> str:
    """The period a row of an event at ``at`` lands in: its own, or the first unlocked one after it.

    Holds the chosen period's guard (shared) to the end of the transaction, so a confirmation of that period
    waits for the rows written into it.
    """
    period = period_of(at, zone or await tenant_zone(session))
    while True:
        await _guard(session, account_id, period, exclusive=False)
        if not await is_locked(session, account_id, period):
            return period
        period = next_period(period)


async def lock_period(session: AsyncSession, account_id: uuid.UUID, period: str, by: str) -> None:
    """Lock a period of an account (its settlement was confirmed); locking twice is harmless.

    Waits for transactions writing rows into the period to commit (see :func:`_guard`): read the period's
    totals after this call.
    """
    await _guard(session, account_id, period, exclusive=True)
    if not await is_locked(session, account_id, period):
        session.add(LedgerPeriod(account_id=account_id, period=period, locked_at=utcnow(), locked_by=by[:200]))
        await session.flush()


async def append(session: AsyncSession, entries: Sequence[EntryIn] | Iterable[EntryIn],
                 zone: str | None = None) -> int:
    """Write ledger rows (skipping any already written for the same event); the number written."""
    rows = list(entries)
    if not rows:
        return 0
    zone = zone or await tenant_zone(session)
    periods: dict[tuple[uuid.UUID, str], str] = {}
    values = []
    now = utcnow()
    for e in rows:
        key = (e.account_id, period_of(e.occurred_at, zone))
        if key not in periods:
            periods[key] = await entry_period(session, e.account_id, e.occurred_at, zone)
        values.append(dict(
            id=new_id(), account_id=e.account_id, line_id=e.line_id, order_id=e.order_id, rule_id=e.rule_id,
            event=e.event, event_ref=e.event_ref[:100], component=e.component[:60], party=e.party,
            party_ref=e.party_ref[:100], amount_fen=int(e.amount_fen), period=periods[key],
            occurred_at=e.occurred_at, created_at=now,
        ))
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(SplitEntry).on_conflict_do_nothing(
        index_elements=["tenant_id", "event", "event_ref", "line_id", "component", "party"]
    ).returning(SplitEntry.id)
    written = (await session.execute(stmt, values)).all() if len(values) > 1 else (
        await session.execute(stmt.values(values[0]))).all()
    return len(written)
