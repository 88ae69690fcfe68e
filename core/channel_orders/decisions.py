"""Notices a channel waits on: decided inside the callback request, answered ``accepted`` or ``refused``.

The rule: a **callback** of type ``code.redeemed``, ``order.refunded`` or ``order.cancelled`` from a channel
whose connector declares ``third_party_codes`` (local-life 三方码 with two-way verification) is decided in the
request, because such a platform acts on the reply itself — it undoes its verification, or refuses the
buyer's refund, only when the reply says ``refused``. Events from polling, and from other channels, are
queued through the outbox as before (:mod:`core.channel_orders.processing`).

* ``code.redeemed``: the code is redeemed through the redemption service, exactly once; a code redeemed in
  a store through kaquan (or voided, returned after a refund, expired) is ``refused`` with the reason.
* ``order.refunded`` / ``order.cancelled``: a refund that would need a redeemed code is ``refused``;
  otherwise unredeemed codes go back to stock (or are voided when revealed) as for a queued refund.
* A notice naming an order not stored yet is answered ``503 channel_order_not_yet`` (``Retry-After``) and
  nothing is stored: the platform's own retries wait for the order. A code we did not sell in a known
  order is ``refused`` (``channel_code_not_found``).

The outcome is stored with the message in the inbox (``status`` ``done``, or ``failed`` with the reason in
``error``): the same ``message_id`` again — the platform retries up to six times — gets the same answer,
and a message a poll stored first (still ``pending``) is decided now, once, under the message's row lock.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.channel_orders.inbox import Stored
from core.channel_orders.models import ChannelMessage
from core.channel_orders.redemptions import channel_redeemed
from core.channel_orders.refunds import apply_refund
from core.db.base import utcnow
from core.errors import DomainError
from plugins import CallbackOutcome, ChannelEvent

#: Event types a channel with ``third_party_codes`` waits on (decided in its callback's request).
DECIDED = ("code.redeemed", "order.refunded", "order.cancelled")
#: The capability that makes a channel wait on them.
CAPABILITY = "third_party_codes"
#: Refusals cured by waiting: the order the notice names has not arrived yet.
WAIT_FOR = ("channel_order_not_found",)


def decided_now(capabilities: frozenset[str] | set[str], event: ChannelEvent) -> bool:
    """Is ``event`` (arriving by callback) decided in the request? (See the module's rule.)"""
    return event.type in DECIDED and CAPABILITY in capabilities


async def _decide(session: AsyncSession, kernel: Any, account_id: uuid.UUID, event: ChannelEvent) -> str:
    """Do what ``event`` asks, or nothing: ``""`` when done, else the refusal's reason (``<code>: <why>``)."""
    try:
        async with session.begin_nested():  # a refusal leaves nothing behind
            if event.type == "code.redeemed":
                if event.redemption is None:
                    return "channel_event_malformed: the notice carries no redemption"
                verdict = await channel_redeemed(session, kernel, account_id, event.redemption, decided=True)
                return verdict.reason
            if event.refund is None:
                return "channel_event_malformed: the notice carries no refund"
            await apply_refund(session, account_id, event.refund,
                               "cancellation" if event.type == "order.cancelled" else "refund", whole=True)
    except DomainError as exc:
        if exc.code in WAIT_FOR:
            raise DomainError("The order this notice names has not arrived yet: call again",
                              "该通知所指的订单尚未到达，请稍后重试", code="channel_order_not_yet", status=503,
                              headers={"Retry-After": "30"}) from None
        return f"{exc.code}: {exc.en}"[:300]
    return ""


def recorded(message: ChannelMessage) -> CallbackOutcome:
    """The answer a decided message was given (the same for every repeat)."""
    if message.status == "failed":
        return CallbackOutcome(status="refused", reason=message.error)
    return CallbackOutcome(status="accepted")


async def decide(
    session: AsyncSession, kernel: Any, account_id: uuid.UUID, stored: Stored, event: ChannelEvent
) -> CallbackOutcome:
    """Decide the stored message once (under its row lock) and store the outcome with it; a decided one
    is answered as it was the first time."""
    message = (await session.execute(
        select(ChannelMessage).where(ChannelMessage.id == stored.message_id).with_for_update()
    )).scalar_one()
    if message.status != "pending":
        return recorded(message)
    reason = await _decide(session, kernel, account_id, event)
    message.attempts += 1
    message.status, message.error, message.processed_at = ("failed" if reason else "done"), reason[:500], utcnow()
    await session.flush()
    return recorded(message)
