"""Idempotent actors: claim a business key in the same transaction as the work.

``processed_messages`` has a unique ``(tenant_id, business_key)``. :func:`run_once` inserts the key with
``ON CONFLICT DO NOTHING``: the first run gets ``True`` and does the work; a second run (a redelivered
or duplicated message) gets ``False`` and does nothing. If the work fails the transaction rolls back,
the claim with it, and a retry can do the work. On PostgreSQL a concurrent second run waits for the
first transaction and then sees the key as taken.

Usage::

    async with env.db().transaction() as session:
        if not await run_once(session, message.idempotency_key, "grant_codes"):
            return
        ...  # the work, committed with the claim
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.base import utcnow
from core.db.ids import new_id
from core.db.results import rowcount
from core.jobs.models import ProcessedMessage


async def run_once(session: AsyncSession, business_key: str, actor: str) -> bool:
    """Claim ``business_key`` for the tenant in context; ``False`` if it was already done."""
    values: dict[str, Any] = {
        "id": new_id(),
        "business_key": business_key,
        "actor": actor,
        "created_at": utcnow(),
    }
    dialect = session.bind.dialect.name if session.bind is not None else ""
    if dialect in ("postgresql", "sqlite"):
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt = (
            insert(ProcessedMessage)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["tenant_id", "business_key"])
        )
        result = await session.execute(stmt)
        return bool(rowcount(result))
    exists = await session.scalar(
        select(ProcessedMessage.id).where(ProcessedMessage.business_key == business_key)
    )
    if exists is not None:
        return False
    session.add(ProcessedMessage(**values))
    await session.flush()
    return True


async def already_done(session: AsyncSession, business_key: str) -> bool:
    """Whether ``business_key`` has been done for the tenant in context."""
    found = await session.scalar(
        select(ProcessedMessage.id).where(ProcessedMessage.business_key == business_key)
    )
    return found is not None
