"""Emit and read domain events."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
from sqlalchemy import JSON, Uuid, bindparam, event, exists, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from core.db.base import utcnow
from core.db.ids import new_id
from core.db.paging import keyset_page
from core.db.session import KaquanSession
from core.domains import event_types
from core.events.models import Event, WebhookSubscription
from core.jobs.models import OutboxMessage

FANOUT_ACTOR = "fan_out_webhooks"
_PENDING_FANOUT = "kaquan_pending_fanout"

#: Every domain's event types with their descriptions (see :mod:`core.domains`).
EVENT_TYPES: dict[str, str] = event_types()
#: The type of a webhook test send (:mod:`core.webhooks.probe`): written for the delivery log only, never
#: fanned out, not in the event feed, not a type a subscription can choose.
TEST_EVENT = "webhook.test"


class EventOut(msgspec.Struct):
    id: uuid.UUID
    type: str
    object_id: str
    data: dict[str, Any]
    created_at: dt.datetime


class EventPage(msgspec.Struct):
    items: list[EventOut]
    next_cursor: uuid.UUID | None


def emit(session: AsyncSession, type_: str, object_id: object, data: dict[str, Any]) -> Event:
    """Record an event in the current transaction (it exists if and only if the change committed)."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    event = Event(id=new_id(), type=type_, object_id=str(object_id), data=msgspec.to_builtins(data))
    session.add(event)
    # Webhooks: fanned out by a job from an outbox row written with the event (see _queue_fan_out).
    session.info.setdefault(_PENDING_FANOUT, []).append(event)
    return event


def _fan_out_statement() -> Any:
    """One outbox row for an event's webhook fan-out, written only if the tenant has an active
    subscription: a tenant without webhooks pays no relay or job work per event."""
    outbox = OutboxMessage.__table__
    subs = WebhookSubscription.__table__
    tenant = bindparam("tenant_id", type_=Uuid())
    now = bindparam("now", type_=outbox.c.created_at.type)
    rows = select(
        tenant,
        bindparam("id", type_=Uuid()),
        literal(FANOUT_ACTOR),
        bindparam("payload", type_=JSON()),
        bindparam("business_key", type_=outbox.c.business_key.type),
        literal("pending"),
        literal(0),
        now,
        now,
    ).where(exists().where(subs.c.tenant_id == tenant, subs.c.active.is_(True)))
    columns = ["tenant_id", "id", "actor", "payload", "business_key", "status", "attempts"]
    return insert(outbox).from_select([*columns, "available_at", "created_at"], rows)


_FAN_OUT = _fan_out_statement()


@event.listens_for(KaquanSession, "after_flush")
def _queue_fan_out(session: Session, _flush_context: Any) -> None:
    """Write the fan-out rows of the events this flush inserted, in the same transaction."""
    pending: list[Event] | None = session.info.get(_PENDING_FANOUT)
    if not pending:
        return
    new = session.new  # built on each access: once per flush, not once per event
    flushed = [e for e in pending if e in new]
    if not flushed:
        return
    session.info[_PENDING_FANOUT] = [e for e in pending if e not in new]
    now = utcnow()
    connection = session.connection()
    connection.execute(  # one batched statement for every event of the flush (a bulk job flushes hundreds)
        _FAN_OUT,
        [
            {
                "tenant_id": e.tenant_id,
                "id": new_id(),
                "payload": {"event_id": str(e.id)},
                "business_key": f"webhooks:{e.id}",
                "now": now,
            }
            for e in flushed
        ],
    )


@event.listens_for(KaquanSession, "after_commit")
@event.listens_for(KaquanSession, "after_soft_rollback")
def _drop_pending_fan_out(session: Session, *_: Any) -> None:
    session.info.pop(_PENDING_FANOUT, None)


async def list_events(session: AsyncSession, after: uuid.UUID | None, types: list[str], limit: int) -> EventPage:
    """Oldest first after ``after`` (a cursor), optionally only some types. Webhook test events
    (``webhook.test``, sent to one endpoint from the console or the API) are not part of the feed."""
    q = select(Event)
    q = q.where(Event.type.in_(types)) if types else q.where(Event.type != TEST_EVENT)
    page = await keyset_page(session, q, Event.id, cursor=after, limit=limit, descending=False)
    items = [EventOut(r.id, r.type, r.object_id, r.data, r.created_at) for r in page.items]
    return EventPage(items, page.next_cursor)
