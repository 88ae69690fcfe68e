"""Asking for a stock push: one coalesced outbox message per channel account and time window.

Any change that must reach a channel (stock, quota, price, status) bumps the listing's ``version`` and calls
:func:`request_push` for its account. All the requests of one account within one window
(:data:`COALESCE_SECONDS`) share one outbox business key, so they become one job, run when the window
closes; the job (:mod:`core.channels.pushing`) pushes every listing of the account whose ``version`` is
ahead of ``pushed_version``, in batches.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.base import utcnow
from core.db.context import require_tenant
from core.jobs.outbox import enqueue_for_tenants

__all__ = ["COALESCE_SECONDS", "PUSH_ACTOR", "REBALANCE_ACTOR", "push_key", "push_window", "request_push",
           "request_rebalance"]

#: Changes of one account within this many seconds are pushed together.
COALESCE_SECONDS = 2
PUSH_ACTOR = "push_channel_stock"
REBALANCE_ACTOR = "rebalance_channel_quotas"
_EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def push_window(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The coalescing window ``now`` falls in: (start, end)."""
    step = dt.timedelta(seconds=COALESCE_SECONDS)
    start = _EPOCH + ((now - _EPOCH) // step) * step
    return start, start + step


def push_key(account_id: uuid.UUID, window_start: dt.datetime) -> str:
    return f"{PUSH_ACTOR}:{account_id}:{window_start.isoformat()}"


async def request_push(
    session: AsyncSession, account_id: uuid.UUID, *, now: dt.datetime | None = None
) -> bool:
    """Queue the account's stock push for the end of the current window, unless it is queued already.

    Returns whether this call wrote the outbox row. On PostgreSQL a transaction-scoped advisory try-lock on
    the key keeps concurrent writers from queueing behind each other's uncommitted row: the one that holds
    it writes the row, the others carry on (their change is in the same window, and the job pushes every
    listing whose version is ahead, whichever transaction bumped it).
    """
    return await _coalesced(session, PUSH_ACTOR, account_id, {"account_id": str(account_id)}, now)


async def request_rebalance(
    session: AsyncSession, product_id: uuid.UUID, *, now: dt.datetime | None = None
) -> bool:
    """Queue the resizing of a product's listing quotas to its stock (one job per product and window)."""
    return await _coalesced(session, REBALANCE_ACTOR, product_id, {"product_id": str(product_id)}, now)


async def _coalesced(session: AsyncSession, actor: str, subject: uuid.UUID, payload: dict[str, str],
                     now: dt.datetime | None) -> bool:
    start, end = push_window(now or utcnow())
    key = f"{actor}:{subject}:{start.isoformat()}"
    bind = session.bind
    if bind is not None and bind.dialect.name == "postgresql":
        got = await session.scalar(select(func.pg_try_advisory_xact_lock(func.hashtextextended(key, 0))))
        if not got:
            return False
    created = await enqueue_for_tenants(
        session, actor, payload, business_key=key, tenant_ids=[require_tenant()], available_at=end,
    )
    return created > 0
