"""Emit and read domain events."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.ids import new_id
from core.events.models import Event
from core.jobs.outbox import enqueue

EVENT_TYPES: dict[str, str] = {
    "stock.low": "A product's available stock fell below its threshold, days of cover or watermark.",
    "stock.near_expiry": "Available codes of a product expire within its near-expiry window.",
    "grant.created": "Codes were granted to a member or a contact.",
    "grant.delivered": "A grant's notification was accepted by the notifier (e-mail, SMS).",
    "grant.delivery_failed": "A grant's notification could not be delivered.",
    "grant.voided": "An undelivered grant was voided; its codes went back to stock.",
    "code.claimed": "A member claimed a code through a claim link.",
    "code.redeemed": "A code was redeemed (核销), or part of a stored-value balance was spent.",
    "code.redemption_rolled_back": "A redemption was rolled back within the rollback window.",
    "code.transferred": "A member transferred an unredeemed code to another phone (转赠).",
    "risk.flagged": "A risk rule flagged activity (e.g. one device used by many members).",
}


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
    # Webhooks: fanned out by a job from an outbox row written in this same transaction.
    enqueue(session, "fan_out_webhooks", {"event_id": str(event.id)}, business_key=f"webhooks:{event.id}")
    return event


async def list_events(session: AsyncSession, after: uuid.UUID | None, types: list[str], limit: int) -> EventPage:
    """Oldest first after ``after`` (a cursor), optionally only some types."""
    q = select(Event).order_by(Event.id).limit(limit + 1)
    if after is not None:
        q = q.where(Event.id > after)
    if types:
        q = q.where(Event.type.in_(types))
    rows = list((await session.execute(q)).scalars())
    items = [EventOut(r.id, r.type, r.object_id, r.data, r.created_at) for r in rows[:limit]]
    return EventPage(items, items[-1].id if len(rows) > limit else None)
