"""The transactional outbox: a service writes a message in the same transaction as its change.

The relay (``core.jobs.relay``) later enqueues pending rows to dramatiq, so a crash or a broker
outage never loses a message, and the business key makes a repeated write a no-op.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.base import utcnow
from core.db.ids import new_id
from core.jobs.models import OutboxMessage


def enqueue(
    session: AsyncSession,
    actor: str,
    payload: dict[str, Any],
    *,
    business_key: str | None = None,
    delay: dt.timedelta | None = None,
) -> OutboxMessage:
    """Queue ``actor(payload)`` to run after this transaction commits. Payloads never hold plaintext secrets."""
    msg = OutboxMessage(
        actor=actor,
        payload=payload,
        business_key=business_key or f"{actor}:{new_id()}",
        available_at=utcnow() + (delay or dt.timedelta()),
    )
    session.add(msg)
    return msg


async def enqueue_for_tenants(
    session: AsyncSession,
    actor: str,
    payload: dict[str, Any],
    *,
    business_key: str,
    tenant_ids: list[uuid.UUID],
    available_at: dt.datetime | None = None,
    chunk: int = 500,
) -> int:
    """Queue ``actor(payload)`` once per tenant; a tenant that already has ``business_key`` is skipped.

    For cross-tenant producers (the scheduler) inside a named bypass. Returns how many rows were new.
    """
    dialect = session.bind.dialect.name if session.bind is not None else ""
    if dialect not in ("postgresql", "sqlite"):
        raise RuntimeError(f"enqueue_for_tenants does not support {dialect!r}")
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    when = available_at or utcnow()
    created = 0
    for start in range(0, len(tenant_ids), chunk):
        rows = [
            {
                "tenant_id": tid,
                "id": new_id(),
                "actor": actor,
                "payload": payload,
                "business_key": business_key,
                "status": "pending",
                "attempts": 0,
                "available_at": when,
                "created_at": when,
            }
            for tid in tenant_ids[start : start + chunk]
        ]
        stmt = (
            insert(OutboxMessage)
            .on_conflict_do_nothing(index_elements=["tenant_id", "business_key"])
            .returning(OutboxMessage.id)
        )
        created += len((await session.execute(stmt, rows)).all())
    return created
