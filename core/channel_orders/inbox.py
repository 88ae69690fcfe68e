"""The inbox of channel messages: every event from a callback or a poll is stored once per account and
``message_id`` (payload encrypted under the tenant's data key), and its work is queued through the outbox.

A repeated ``message_id`` (the channel retries a callback; a poll overlaps a callback) is recognised by the
unique key ``(tenant_id, account_id, message_id)``: the insert does nothing and the caller answers the
channel as for a success.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.channel_orders.models import ChannelMessage
from core.crypto.envelope import TenantCipher
from core.db.base import utcnow
from core.db.ids import new_id
from core.jobs.outbox import enqueue
from plugins import ChannelEvent

#: The outbox actor that processes a stored message.
PROCESS_ACTOR = "process_channel_message"
#: Events a callback answers itself (never queued from a callback).
SYNCHRONOUS = ("code.issue", "code.query", "ping")
#: Events that ask for no work (never queued from a poll either).
NO_WORK = ("code.query", "ping")


def _aad(account_id: uuid.UUID, message_id: str) -> bytes:
    return b"channel_message:" + account_id.bytes + message_id.encode("utf-8")


def seal_event(cipher: TenantCipher, account_id: uuid.UUID, event: ChannelEvent) -> bytes:
    """The event as JSON, encrypted (bound to the account and the message id)."""
    return cipher.encrypt(msgspec.json.encode(event), _aad(account_id, event.message_id))


def open_event(cipher: TenantCipher, message: ChannelMessage) -> ChannelEvent:
    """The stored event of ``message``."""
    raw = cipher.decrypt(message.payload, _aad(message.account_id, message.message_id))
    return msgspec.json.decode(raw, type=ChannelEvent)


@dataclass(frozen=True)
class Stored:
    """A message in the inbox and whether this call stored it (``False``: a repeat of one seen before)."""

    message_id: uuid.UUID
    new: bool


async def store_event(
    session: AsyncSession,
    cipher: TenantCipher,
    account_id: uuid.UUID,
    event: ChannelEvent,
    *,
    source: str,
    queue: bool = True,
    decide: bool = False,
) -> Stored:
    """Store ``event`` once; a new one is queued for :data:`PROCESS_ACTOR` when ``queue`` (the caller
    answers the others itself, or they ask for nothing); with ``decide`` it stays ``pending`` unqueued, for
    the caller to decide in its request (:mod:`core.channel_orders.decisions`). A repeat changes nothing."""
    dialect = session.bind.dialect.name if session.bind is not None else ""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    row_id = new_id()
    values: dict[str, Any] = {
        "id": row_id,
        "account_id": account_id,
        "message_id": event.message_id[:200],
        "type": event.type,
        "source": source,
        "payload": seal_event(cipher, account_id, event),
        "status": "pending" if queue or decide else "done",
        "attempts": 0,
        "error": "",
        "processed_at": None if queue or decide else utcnow(),
        "created_at": utcnow(),
    }
    stmt = (
        insert(ChannelMessage)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["tenant_id", "account_id", "message_id"])
        .returning(ChannelMessage.id)
    )
    inserted = (await session.execute(stmt)).scalar_one_or_none()
    if inserted is None:
        existing = await session.scalar(
            select(ChannelMessage.id).where(
                ChannelMessage.account_id == account_id, ChannelMessage.message_id == event.message_id[:200]
            )
        )
        return Stored(existing or row_id, False)
    if queue and not decide:
        enqueue(session, PROCESS_ACTOR, {"message_id": str(row_id)}, business_key=f"{PROCESS_ACTOR}:{row_id}")
    return Stored(row_id, True)
