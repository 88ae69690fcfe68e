"""Redemption (核销) in both directions for channels that verify codes themselves (capability
``redemption_sync``), and never on both sides.

* **Channel → kaquan** (event ``code.redeemed``): :func:`channel_redeemed` locks the code, marks the order's
  code ``redeemed`` via ``channel`` and redeems it through the redemption service (the same conditional
  write as a store's scan), so the code is redeemed here exactly once.
* **kaquan → channel**: the redemption service calls :func:`code_redeemed` (extension point
  ``redemption.code_redeemed``) in the redemption's transaction. A code a channel sold is marked
  ``redeemed`` via ``kaquan`` and a ``report_channel_redemption`` job tells the channel (once per
  ``reference``, retried with backoff).

Both paths lock the code row first, so they never wait on each other in a circle; whichever commits first
wins, and the other finds the code redeemed. A channel with ``third_party_codes`` hears the decision in the
reply to its notice (:mod:`core.channel_orders.decisions`): a code redeemed in a store is ``refused`` there and
the channel undoes its verification. A notice that arrived by polling (no reply to give) is recorded as a
conflict (event ``channel.redemption_conflict``) for a person; either way nothing is redeemed twice.

* **Rollback** (extension point ``redemption.code_rolled_back``): a store redemption (or a channel's
  verification) rolled back within the tenant's window puts the order's code back to ``delivered``; when the
  channel knew of the redemption (``reported_at``), no SDK method undoes a verification, so the rollback is
  recorded and event ``channel.redemption_rolled_back`` asks a person to tell the channel.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.channel_orders.models import ChannelOrder, ChannelOrderCode, ChannelOrderLine
from core.channel_orders.splitting import split_redemption, split_rollback
from core.connectors.calls import AccountUnavailable, ConnectorCallFailed, bind_account
from core.db.base import utcnow
from core.db.context import require_tenant
from core.errors import DomainError, NotFound
from core.events.services import emit
from core.inventory.models import Code
from core.inventory.vault import digest_of, unseal
from core.jobs.context import current_env, current_message
from core.jobs.outbox import enqueue
from core.jobs.registry import job
from core.redemption.checks import Caller
from core.redemption.redeem import redeem
from core.redemption.schemas import RedeemIn
from plugins import CallResult, ChannelRedemption

log = structlog.get_logger("kaquan.channel_orders")
REPORT_ACTOR = "report_channel_redemption"
MAX_RETRIES = 6
OPEN = ("issued", "delivered")


@functools.cache
def _mark_redeemed() -> Any:
    """The order's open code ``:redeemed_code`` → ``redeemed`` via kaquan: built once, run on the connection (it is
    on every redemption's path), so it names its tenant itself."""
    c = ChannelOrderCode.__table__.c
    now = bindparam("now", type_=c.state_changed_at.type)
    return (
        update(ChannelOrderCode.__table__)
        .where(c.tenant_id == bindparam("tenant", type_=c.tenant_id.type),
               c.code_id == bindparam("redeemed_code", type_=c.code_id.type), c.state.in_(OPEN))
        .values(state="redeemed", redeemed_via="kaquan", redeemed_at=now, state_changed_at=now)
        .returning(c.id)
    )


async def code_redeemed(session: AsyncSession, code_id: uuid.UUID, facts: dict[str, Any]) -> None:
    """``redemption.code_redeemed``: a code redeemed through kaquan; if a channel sold it, mark it and queue
    the report to that channel."""
    now = utcnow()
    if session.new or session.dirty or session.deleted:
        await session.flush()  # a Core statement on the connection does not autoflush
    connection = await session.connection()
    row = (await connection.execute(_mark_redeemed(), {"tenant": require_tenant(), "redeemed_code": code_id,
                                                       "now": now})).first()
    if row is None:
        return
    await split_redemption(session, row.id, facts.get("redemption_id", ""), now)  # redeemed-value charges
    # once per redemption: a code redeemed again after a rollback is reported again
    key = f"{REPORT_ACTOR}:{row.id}:{facts.get('redemption_id', '')}"
    enqueue(session, REPORT_ACTOR, {"record_id": str(row.id)}, business_key=key)


async def code_rolled_back(session: AsyncSession, code_id: uuid.UUID, facts: dict[str, Any]) -> None:
    """``redemption.code_rolled_back``: a redemption of a code a channel sold was rolled back: the order's
    code is open again (``delivered``, or ``issued`` if never handed over). If the channel knew of the
    redemption (we reported it, or it verified the code itself), it must be told: no SDK method undoes a
    verification, so the rollback is recorded and ``channel.redemption_rolled_back`` raised for a person."""
    row = (await session.execute(
        select(ChannelOrderCode, ChannelOrder)
        .join(ChannelOrderLine, ChannelOrderLine.id == ChannelOrderCode.line_id)
        .join(ChannelOrder, ChannelOrder.id == ChannelOrderLine.order_id)
        .where(ChannelOrderCode.code_id == code_id, ChannelOrderCode.state == "redeemed")
        .order_by(ChannelOrderCode.id).limit(1).with_for_update(of=ChannelOrderCode)
    )).first()
    if row is None:
        return
    held, order = row
    told, via, now = held.reported_at is not None, held.redeemed_via or "kaquan", utcnow()
    await split_rollback(session, held.id, held.line_id, facts.get("redemption_id", ""), now)
    held.state = "delivered" if held.delivered_at is not None else "issued"
    held.redeemed_at, held.redeemed_via, held.reported_at, held.state_changed_at = None, "", None, now
    await session.flush()
    if not told:
        return  # a report still queued finds the code open and tells the channel nothing
    out = {"channel_order_id": order.channel_order_id, "account_id": str(order.account_id),
           "order_code_id": str(held.id), "last4": facts.get("last4"), "redeemed_via": via,
           "redemption_id": facts.get("redemption_id"), "reason": facts.get("reason"),
           "action": "tell the channel the verification is undone (no SDK method does it)"}
    record(session, "channel_order.redemption_rolled_back", "channel_order", order.id, out)
    emit(session, "channel.redemption_rolled_back", order.id, out)
    log.warning("channel_redemption_rolled_back", order=str(order.id), via=via)


@dataclass(frozen=True)
class Verdict:
    """What became of a channel's redemption notice: ``ok`` (redeemed now, or by an earlier notice of the
    channel), else refused with ``reason`` (``<code>: <why>``)."""

    ok: bool
    reason: str = ""


async def _conflict(session: AsyncSession, order: ChannelOrder, detail: str) -> None:
    facts = {"channel_order_id": order.channel_order_id, "account_id": str(order.account_id), "detail": detail[:200]}
    record(session, "channel_order.redemption_conflict", "channel_order", order.id, facts)
    emit(session, "channel.redemption_conflict", order.id, facts)
    log.warning("channel_redemption_conflict", order=str(order.id), detail=detail[:200])


async def _refused(session: AsyncSession, order: ChannelOrder, reason: str, *, decided: bool) -> Verdict:
    if decided:  # the channel hears it in the reply and undoes its verification: in step, nobody needs to act
        record(session, "channel_order.redemption_refused", "channel_order", order.id,
               {"channel_order_id": order.channel_order_id, "reason": reason[:200]})
    else:
        await _conflict(session, order, reason)
    return Verdict(ok=False, reason=reason[:300])


def _held_reason(held: ChannelOrderCode) -> str:
    if held.state == "redeemed":
        when = held.redeemed_at.isoformat(timespec="seconds") if held.redeemed_at else ""
        return f"already_redeemed: the code was redeemed in a store through kaquan {when}".strip()
    return f"code_{held.state}: the code was {held.state} after a refund"


async def channel_redeemed(
    session: AsyncSession, kernel: Any, account_id: uuid.UUID, notice: ChannelRedemption, *, decided: bool = False
) -> Verdict:
    """The channel verified ``notice.code`` of one of its orders: redeem it here once. ``ok`` when redeemed
    now or by an earlier notice of the channel; refused (``reason``) when it was redeemed in a store, voided,
    returned or cannot be redeemed — recorded as a conflict unless ``decided`` (the channel hears the refusal
    in its reply); ``404`` for an order or a code we did not sell on this account."""
    order = (await session.execute(
        select(ChannelOrder).where(ChannelOrder.account_id == account_id,
                                   ChannelOrder.channel_order_id == notice.order_id[:100])
    )).scalar_one_or_none()
    if order is None:
        raise NotFound(f"No channel order {notice.order_id} on this account",
                       f"该渠道账号下没有订单 {notice.order_id}", code="channel_order_not_found")
    cipher = await kernel.keys.cipher(session)
    code = (await session.execute(
        select(Code).where(Code.digest == digest_of(cipher, notice.code)).with_for_update()
    )).scalar_one_or_none()
    held = None
    if code is not None:
        held = (await session.execute(
            select(ChannelOrderCode).join(ChannelOrderLine, ChannelOrderLine.id == ChannelOrderCode.line_id)
            .where(ChannelOrderLine.order_id == order.id, ChannelOrderCode.code_id == code.id)
            .order_by(ChannelOrderCode.state.in_(OPEN).desc(), ChannelOrderCode.id).limit(1)
        )).scalar_one_or_none()
    if code is None or held is None:
        raise NotFound("This code was not sold in that order", "该券码不属于此订单", code="channel_code_not_found")
    if held.state not in OPEN:
        if held.state == "redeemed" and held.redeemed_via == "channel":
            return Verdict(ok=True)  # an earlier notice of the channel redeemed it
        return await _refused(session, order, _held_reason(held), decided=decided)
    number, pin = unseal(cipher, code.digest, code.secret)
    try:
        async with session.begin_nested():
            now = utcnow()
            held.state, held.redeemed_via, held.redeemed_at, held.state_changed_at = "redeemed", "channel", now, now
            held.reported_at = now  # the channel told us: nothing to report back
            await session.flush()
            red = await redeem(session, kernel, RedeemIn(code=number, pin=pin, store=notice.store[:64],
                                                         terminal="channel", reference=notice.reference[:120] or None),
                               Caller())
            await split_redemption(session, held.id, red.id, now)  # redeemed-value charges
    except DomainError as exc:
        await session.refresh(held)
        return await _refused(session, order, f"{exc.code}: {exc.en}", decided=decided)
    record(session, "channel_order.code_redeemed", "channel_order", order.id,
           {"channel_order_id": order.channel_order_id, "via": "channel", "reference": notice.reference[:120]})
    return Verdict(ok=True)


@job(REPORT_ACTOR, max_retries=MAX_RETRIES, min_backoff_ms=5_000, max_backoff_ms=600_000)
async def report_channel_redemption(record_id: str) -> None:
    """Tell the channel that sold it that a code was redeemed through kaquan (once per ``reference``)."""
    env = current_env()
    message = current_message()
    rid = uuid.UUID(record_id)
    async with env.db().transaction() as session:
        row = (await session.execute(
            select(ChannelOrderCode, ChannelOrderLine, ChannelOrder, Code)
            .join(ChannelOrderLine, ChannelOrderLine.id == ChannelOrderCode.line_id)
            .join(ChannelOrder, ChannelOrder.id == ChannelOrderLine.order_id)
            .join(Code, Code.id == ChannelOrderCode.code_id)
            .where(ChannelOrderCode.id == rid)
        )).first()
        if row is None or row[0].state != "redeemed" or row[0].reported_at is not None \
                or row[0].redeemed_via != "kaquan":
            return  # told already, redeemed by the channel itself, or rolled back since
        held, _line, order, code = row
        try:
            bound = await bind_account(session, await env.keys.cipher(session), env.plugins, order.account_id,
                                       db=env.db(), kind="sales_channel")
        except AccountUnavailable:
            return  # a paused or disconnected account is not told; the record keeps reported_at empty
        if not bound.supports("redemption_sync"):
            return
        number, _pin = unseal(await env.keys.cipher(session), code.digest, code.secret)
        notice = ChannelRedemption(order_id=order.channel_order_id, code=number,
                                   redeemed_at=held.redeemed_at or utcnow(), reference=f"kaquan:{held.id}")
    try:
        result = await bound.call("report_redemption", notice, expect=CallResult, limit=10.0)
    except ConnectorCallFailed as exc:
        result = CallResult(status="failed", retryable=exc.retryable, detail=exc.reason)
    retries = message.retries if message else MAX_RETRIES
    if not result.ok and result.retryable and retries < MAX_RETRIES:
        raise RuntimeError(f"channel redemption report for {record_id} not accepted yet: {result.detail[:100]}")
    async with env.db().transaction() as session:
        if result.ok:
            await session.execute(
                update(ChannelOrderCode).where(ChannelOrderCode.id == rid).values(reported_at=utcnow()),
                execution_options={"synchronize_session": False},
            )
        else:
            await _conflict(session, order, f"the channel refused the redemption report: {result.status} "
                                            f"{result.detail}")


class ChannelCodeHolders:
    """``inventory.code_holders``: codes voided in the inventory (a supplier recall) that channel orders hold
    become ``voided`` on the order too (the buyer's code no longer works; a person settles with the channel)."""

    async def lock(self, session: AsyncSession, code_ids: Collection[uuid.UUID]) -> list[uuid.UUID]:
        rows = await session.execute(
            select(ChannelOrderCode.id).where(ChannelOrderCode.code_id.in_(list(code_ids)),
                                              ChannelOrderCode.state.in_(OPEN))
            .order_by(ChannelOrderCode.id).with_for_update()
        )
        return list(rows.scalars())

    async def release(
        self, session: AsyncSession, code_ids: Collection[uuid.UUID], reason: str, locked: Any
    ) -> None:
        now = utcnow()
        await session.execute(
            update(ChannelOrderCode)
            .where(ChannelOrderCode.code_id.in_(list(code_ids)), ChannelOrderCode.state.in_(OPEN))
            .values(state="voided", state_changed_at=now),
            execution_options={"synchronize_session": False},
        )


CHANNEL_HOLDERS = ChannelCodeHolders()
