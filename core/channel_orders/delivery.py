"""``deliver_channel_order``: hand an order's codes to the channel (automatic delivery, 自动发货).

The job reads the order's undelivered lines and their codes (unsealed in memory only) in one transaction,
calls the connector's ``deliver_codes`` once per line outside any transaction, with the line's stable
``reference`` (the channel delivers once whatever the retries), and records the outcome in a second one:

* ``ok`` for every line: the order is ``fulfilled`` (event ``channel.order_fulfilled``);
* ``rejected`` (the channel will never take it), the deadline (``deliver_by``) passed, or the last retry
  failed: the order is ``failed`` and flagged for a person (event ``channel.order_failed``); a person can
  retry it (``POST /api/v1/channel-orders/{id}/retry``) or refund it on the channel;
* a retryable failure (timeout, 429, 5xx, a connector that raised): ``attempts`` grows, ``next_attempt_at``
  says when, and the job raises so the job system retries with backoff.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.channel_orders.fulfilment import mark_fulfilled, mark_handed_over, order_codes
from core.channel_orders.models import ChannelOrder
from core.connectors.calls import AccountUnavailable, BoundAccount, ConnectorCallFailed, bind_cached
from core.db.base import utcnow
from core.db.session import get_scoped
from core.errors import Conflict, NotFound
from core.events.services import emit
from core.jobs.context import JobEnv, current_env, current_message
from core.jobs.outbox import enqueue
from core.jobs.registry import job
from plugins import CallResult, CodeDelivery, IssuedCode

log = structlog.get_logger("kaquan.channel_orders")

DELIVERY_ACTOR = "deliver_channel_order"
#: Retries of a delivery before the order is flagged for a person.
MAX_RETRIES = 6
#: Seconds one ``deliver_codes`` call may take.
CALL_LIMIT = 10.0


class DeliveryRetry(RuntimeError):
    """The channel could not take the codes now; the job system retries with backoff."""


def backoff(attempts: int) -> dt.timedelta:
    """When the next try is due after ``attempts`` tries (5 s doubling, at most 10 min)."""
    return dt.timedelta(seconds=min(600, 5 * 2 ** max(0, attempts - 1)))


def queue_delivery(session: AsyncSession, order_id: uuid.UUID, attempt: int = 0) -> None:
    """Queue the delivery of an allocated order (one outbox row per order and attempt round)."""
    enqueue(session, DELIVERY_ACTOR, {"order_id": str(order_id)},
            business_key=f"{DELIVERY_ACTOR}:{order_id}:{attempt}")


@dataclass
class _Plan:
    order: ChannelOrder
    bound: BoundAccount | None
    lines: dict[str, tuple[uuid.UUID, list[IssuedCode]]] = field(default_factory=dict)
    problem: str = ""


async def _plan(session: AsyncSession, env: JobEnv, order_id: uuid.UUID) -> _Plan | None:
    order = await get_scoped(session, ChannelOrder, order_id)
    if order is None or order.status != "received":
        return None
    plan = _Plan(order, None)
    try:  # reused for a few seconds per process: a burst of deliveries binds the account once
        plan.bound, cipher = await bind_cached(env.db(), env.keys, env.plugins, order.account_id,
                                               kind="sales_channel", session=session)
    except AccountUnavailable as exc:
        plan.problem = f"account unavailable: {exc.reason}"
        return plan
    if not plan.bound.supports("delivery"):
        plan.problem = "the channel takes no delivery (capability 'delivery' missing)"
        return plan
    for line, _held, issued in await order_codes(session, cipher, order.id, states=("issued",)):
        plan.lines.setdefault(line.channel_line_id, (line.id, []))[1].append(issued)
    return plan


@dataclass
class _Outcome:
    delivered: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    retryable: list[str] = field(default_factory=list)


async def _send(plan: _Plan) -> _Outcome:
    out = _Outcome()
    assert plan.bound is not None
    for channel_line_id, (line_id, codes) in sorted(plan.lines.items()):
        delivery = CodeDelivery(order_id=plan.order.channel_order_id, line_id=channel_line_id, codes=codes,
                                reference=f"{plan.order.id}:{channel_line_id}")
        try:
            result: CallResult = await plan.bound.call("deliver_codes", delivery, expect=CallResult, limit=CALL_LIMIT)
        except ConnectorCallFailed as exc:
            result = CallResult(status="failed", retryable=exc.retryable, detail=f"{exc.reason}: {exc.detail}"[:300])
        if result.ok:
            out.delivered.append((line_id, result.channel_ref))
        elif result.status == "rejected" or not result.retryable:
            out.rejected.append(f"line {channel_line_id}: {result.status} {result.detail}"[:300])
        else:
            out.retryable.append(f"line {channel_line_id}: {result.detail or 'failed'}"[:300])
    return out


async def flag_failed(session: AsyncSession, order: ChannelOrder, error: str) -> None:
    """The order could not be delivered: ``failed``, flagged for a person (event ``channel.order_failed``)."""
    now = utcnow()
    await session.execute(
        update(ChannelOrder).where(ChannelOrder.id == order.id)
        .values(status="failed", last_error=error[:500], next_attempt_at=None, updated_at=now),
        execution_options={"synchronize_session": False},
    )
    facts = {"channel_order_id": order.channel_order_id, "account_id": str(order.account_id), "error": error[:200]}
    record(session, "channel_order.failed", "channel_order", order.id, facts)
    emit(session, "channel.order_failed", order.id, facts)
    log.warning("channel_order_failed", order=str(order.id), error=error[:200])


@job(DELIVERY_ACTOR, max_retries=MAX_RETRIES, min_backoff_ms=5_000, max_backoff_ms=600_000)
async def deliver_channel_order(order_id: str) -> None:
    """Hand order ``order_id``'s undelivered codes to its channel, once per line (see the module)."""
    env = current_env()
    message = current_message()
    oid = uuid.UUID(order_id)
    async with env.db().transaction() as session:
        plan = await _plan(session, env, oid)
        if plan is None:
            return
        if plan.problem:
            await flag_failed(session, plan.order, plan.problem)
            return
        if not plan.lines:  # every line already delivered (a retry after the outcome committed)
            await mark_fulfilled(session, plan.order)
            return
    outcome = await _send(plan)
    retries = message.retries if message else MAX_RETRIES
    await _record(env, plan.order, outcome, retries)


async def _record(env: JobEnv, order: ChannelOrder, outcome: _Outcome, retries: int) -> None:
    now = utcnow()
    async with env.db().transaction() as session:
        current = (await session.execute(select(ChannelOrder).where(ChannelOrder.id == order.id))).scalar_one()
        for line_id, ref in outcome.delivered:
            await mark_handed_over(session, [line_id], reference=ref, now=now)
        if outcome.delivered:
            record(session, "channel_order.delivered", "channel_order", order.id,
                   {"lines": len(outcome.delivered), "channel_order_id": order.channel_order_id})
        attempts = current.attempts + 1
        late = current.deliver_by is not None and current.deliver_by <= now
        if outcome.rejected or (outcome.retryable and (retries >= MAX_RETRIES or late)):
            why = "; ".join(outcome.rejected or outcome.retryable) + ("; past the channel's deadline" if late else "")
            current.attempts = attempts
            await flag_failed(session, current, why)
            return
        if outcome.retryable:
            current.attempts, current.next_attempt_at = attempts, now + backoff(attempts)
            current.last_error, current.updated_at = "; ".join(outcome.retryable)[:500], now
        else:
            current.attempts = attempts
            await mark_fulfilled(session, current)
    if outcome.retryable:
        log.warning("channel_delivery_retry", order=str(order.id), attempts=attempts, retries=retries)
        raise DeliveryRetry(f"channel order {order.id}: {len(outcome.retryable)} line(s) not delivered yet")


async def retry_order(session: AsyncSession, order_id: uuid.UUID) -> ChannelOrder:
    """A person asks to deliver a ``failed`` order again: back to ``received``, delivery queued."""
    order = await get_scoped(session, ChannelOrder, order_id)
    if order is None:
        raise NotFound("Channel order not found", "渠道订单不存在", code="channel_order_not_found")
    if order.status != "failed":
        raise Conflict(f"Only a failed order can be retried (this one is {order.status})",
                       f"只有失败的订单可以重试（当前状态：{order.status}）", code="channel_order_not_retryable")
    order.status, order.last_error, order.updated_at = "received", "", utcnow()
    order.attempts = 0
    queue_delivery(session, order.id, attempt=int(utcnow().timestamp()))
    record(session, "channel_order.retried", "channel_order", order.id, {"channel_order_id": order.channel_order_id})
    await session.flush()
    return order
