"""``process_channel_message``: the outbox job that does what a stored channel message asks.

``order.paid`` (and a ``code.issue`` that arrived by polling): store the order once, fulfil it from the
listings' quotas and queue its delivery. ``order.cancelled`` / ``order.refunded``: apply the refund once.
``code.redeemed``: redeem the code here once. The message is marked ``done`` with the work, in one
transaction; a refusal the channel must hear about (unknown order, code already redeemed) marks it
``failed`` with the reason, and anything unexpected raises so the job system retries.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from core.channel_orders.delivery import queue_delivery
from core.channel_orders.fulfilment import fulfil, receive_order
from core.channel_orders.inbox import PROCESS_ACTOR, open_event
from core.channel_orders.models import ChannelMessage
from core.channel_orders.redemptions import channel_redeemed
from core.channel_orders.refunds import apply_refund
from core.db.base import utcnow
from core.db.session import get_scoped
from core.errors import DomainError
from core.jobs.context import current_env, current_message
from core.jobs.registry import job
from plugins import ChannelEvent

log = structlog.get_logger("kaquan.channel_orders")


async def take_order(
    session: AsyncSession, kernel: Any, account_id: uuid.UUID, event: ChannelEvent, *, source: str
) -> None:
    """Store a paid order once; a new one is fulfilled and its delivery queued."""
    order_in = event.order if event.order is not None else (event.issue.order if event.issue else None)
    if order_in is None:
        raise DomainError("The event carries no order", "该消息没有订单内容", code="channel_event_malformed")
    cipher = await kernel.keys.cipher(session)
    order, new = await receive_order(session, cipher, account_id, order_in, source=source)
    if not new:
        return

    async def then(_lines: list[Any]) -> None:  # before the quota is taken: a refusal rolls it back
        queue_delivery(session, order.id)
        await session.flush()

    await fulfil(session, kernel.settings, order, order_in, then=then)


async def handle_event(
    session: AsyncSession, kernel: Any, account_id: uuid.UUID, event: ChannelEvent, *, source: str
) -> None:
    """Do what ``event`` asks (see the module); raises :class:`DomainError` for what cannot be done."""
    if event.type in ("order.paid", "code.issue"):
        await take_order(session, kernel, account_id, event, source=source)
    elif event.type in ("order.cancelled", "order.refunded"):
        if event.refund is None:
            raise DomainError("The event carries no refund", "该消息没有退款内容", code="channel_event_malformed")
        await apply_refund(session, account_id, event.refund,
                           "cancellation" if event.type == "order.cancelled" else "refund")
    elif event.type == "code.redeemed":
        if event.redemption is None:
            raise DomainError("The event carries no redemption", "该消息没有核销内容", code="channel_event_malformed")
        await channel_redeemed(session, kernel, account_id, event.redemption)


class NotYet(RuntimeError):
    """The message names an order not stored yet (a refund or a redemption that overtook its order.paid):
    the job system retries it with backoff; the last try marks it failed."""


#: Refusals that may be cured by waiting: the order the message names has not arrived yet.
WAIT_FOR = ("channel_order_not_found",)
MAX_RETRIES = 8


async def process_message(session: AsyncSession, kernel: Any, message_id: uuid.UUID, *, final: bool = True) -> str:
    """Process one pending message in ``session``; returns its status afterwards. Unless ``final``, a message
    naming an order not stored yet raises :class:`NotYet` (retried later) instead of failing."""
    msg = await get_scoped(session, ChannelMessage, message_id)
    if msg is None or msg.status != "pending":
        return msg.status if msg is not None else "missing"
    event = open_event(await kernel.keys.cipher(session), msg)
    # marked done up front (written as the savepoint begins, before the work takes any lock): the work's
    # own locks (a listing's quota) are then held only to the commit; a refusal rewrites it, and anything
    # else rolls the whole transaction back
    msg.attempts += 1
    msg.status, msg.processed_at = "done", utcnow()
    try:
        async with session.begin_nested():
            await handle_event(session, kernel, msg.account_id, event, source=msg.source)
    except DomainError as exc:
        if exc.code in WAIT_FOR and not final:
            msg.status, msg.processed_at = "pending", None  # as it was, should a caller commit anyway
            raise NotYet(f"message {msg.id}: {exc.en}") from exc
        msg.status, msg.error = "failed", f"{exc.code}: {exc.en}"[:500]
        log.warning("channel_message_failed", message=str(msg.id), type=msg.type, code=exc.code)
    return msg.status


@job(PROCESS_ACTOR, max_retries=MAX_RETRIES, min_backoff_ms=2_000)
async def process_channel_message(message_id: str) -> None:
    """Do what the stored channel message ``message_id`` asks, once."""
    env = current_env()
    message = current_message()
    final = message is None or message.retries >= MAX_RETRIES
    async with env.db().transaction() as session:
        await process_message(session, env, uuid.UUID(message_id), final=final)
