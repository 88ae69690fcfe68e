"""The transactional outbox: a service writes a message in the same transaction as its change.

The relay (``core.jobs.relay``) later enqueues pending rows to dramatiq, so a crash or a broker
outage never loses a message, and the business key makes a repeated write a no-op.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

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
