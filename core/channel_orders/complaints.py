"""Buyers' complaints about channel orders: recorded by a person (or reported by a channel), listed per order.

They count in the complaint rate of the channel KPIs (:mod:`core.kpis.queries`: orders with a complaint
over orders, flagged from 2%). A complaint is never edited or deleted; each one is audited.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.context import current_actor
from core.audit.services import record
from core.channel_orders.models import ChannelComplaint, ChannelOrder
from core.db.base import utcnow
from core.db.session import get_scoped
from core.errors import FieldError, NotFound, ValidationFailed

__all__ = ["COMPLAINT_CATEGORIES", "ComplaintIn", "ComplaintOut", "list_complaints", "record_complaint"]

#: ``delivery``: codes late or not received; ``code_invalid``: a code did not work; ``refund``: a refund
#: dispute; ``service``: how the buyer was treated; ``description``: not as described; ``other``.
COMPLAINT_CATEGORIES = ("delivery", "code_invalid", "refund", "service", "description", "other")
Category = Literal["delivery", "code_invalid", "refund", "service", "description", "other"]


class ComplaintIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A complaint to record: its category, a note, and when the buyer complained (default: now)."""

    category: Category
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""
    occurred_at: dt.datetime | None = None


class ComplaintOut(msgspec.Struct, kw_only=True):
    """A recorded complaint."""

    id: uuid.UUID
    order_id: uuid.UUID
    account_id: uuid.UUID
    category: str
    note: str
    source: str
    occurred_at: dt.datetime
    created_by: str
    created_at: dt.datetime


def _out(c: ChannelComplaint) -> ComplaintOut:
    return ComplaintOut(id=c.id, order_id=c.order_id, account_id=c.account_id, category=c.category, note=c.note,
                        source=c.source, occurred_at=c.occurred_at, created_by=c.created_by,
                        created_at=c.created_at)


async def _order(session: AsyncSession, order_id: uuid.UUID) -> ChannelOrder:
    order = await get_scoped(session, ChannelOrder, order_id)
    if order is None:
        raise NotFound("Channel order not found", "渠道订单不存在", code="channel_order_not_found")
    return order


async def record_complaint(session: AsyncSession, order_id: uuid.UUID, body: ComplaintIn, *,
                           source: str = "manual") -> ComplaintOut:
    """Record a complaint on an order; ``404 channel_order_not_found``; ``422 complaint_in_future`` when
    ``occurred_at`` is after now or before the order was placed."""
    order = await _order(session, order_id)
    now = utcnow()
    at = body.occurred_at or now
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    if at > now + dt.timedelta(minutes=5) or at < order.placed_at:
        raise ValidationFailed("The complaint's time must lie between the order's placing and now",
                               "投诉时间须在下单之后、当前时间之前", code="complaint_time_invalid",
                               errors=[FieldError(field="occurred_at", message="out of range", code="out_of_range")])
    actor = current_actor()
    complaint = ChannelComplaint(account_id=order.account_id, order_id=order.id, category=body.category,
                                 note=body.note.strip()[:500], source=source, occurred_at=at,
                                 created_by=f"{actor.type}:{actor.id}"[:200])
    session.add(complaint)
    await session.flush()
    record(session, "channel_order.complaint_recorded", "channel_order", order.id,
           {"complaint_id": str(complaint.id), "category": body.category, "source": source})
    return _out(complaint)


async def list_complaints(session: AsyncSession, order_id: uuid.UUID) -> list[ComplaintOut]:
    """An order's complaints, oldest first; ``404 channel_order_not_found``."""
    order = await _order(session, order_id)
    rows = await session.execute(select(ChannelComplaint).where(ChannelComplaint.order_id == order.id)
                                 .order_by(ChannelComplaint.occurred_at, ChannelComplaint.id))
    return [_out(c) for c in rows.scalars()]
