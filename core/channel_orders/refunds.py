"""Cancellations and refunds reported by the channel: stored once per refund id; the line's unredeemed codes
go back to stock when the buyer never saw them, and are voided when they did (as a grant void does today);
the listing's quota is given back.

A refund takes ``quantity`` units of the line (a bundle's unit is each of its codes), unrevealed codes
first. Redeemed codes are never refunded here: a refund that asks for more than is left refunds what is
left, and the refund row says how many came back (``returned``) and how many were voided (``voided``).
When the channel waits for the decision (``whole``: a channel with ``third_party_codes``, see
:mod:`core.channel_orders.decisions`), a refund that would need a redeemed code is refused whole instead
(``409 channel_refund_redeemed``) and nothing changes: the channel refuses the buyer's refund.
"""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.channel_orders.fulfilment import _insert
from core.channel_orders.models import ChannelOrder, ChannelOrderCode, ChannelOrderLine, ChannelRefund
from core.channel_orders.splitting import split_refund
from core.channels.quotas import give_back_quota
from core.db.base import utcnow
from core.db.ids import new_id
from core.errors import Conflict, NotFound
from core.events.services import emit
from core.inventory.custody import void_codes
from core.inventory.models import Code
from plugins import RefundNotice

RefundKind = Literal["refund", "cancellation"]


async def _order_line(
    session: AsyncSession, account_id: uuid.UUID, notice: RefundNotice
) -> tuple[ChannelOrder, ChannelOrderLine | None]:
    order = (await session.execute(
        select(ChannelOrder).where(ChannelOrder.account_id == account_id,
                                   ChannelOrder.channel_order_id == notice.order_id[:100]).with_for_update()
    )).scalar_one_or_none()
    if order is None:
        raise NotFound(f"No channel order {notice.order_id} on this account",
                       f"该渠道账号下没有订单 {notice.order_id}", code="channel_order_not_found")
    line = (await session.execute(
        select(ChannelOrderLine).where(ChannelOrderLine.order_id == order.id,
                                       ChannelOrderLine.channel_line_id == notice.line_id[:100]).with_for_update()
    )).scalar_one_or_none()
    return order, line


async def _return_to_stock(session: AsyncSession, code_ids: list[uuid.UUID]) -> None:
    """Unrevealed codes are available again (a reusable code gets its use back)."""
    now = utcnow()
    for cid in code_ids:
        await session.execute(
            update(Code).where(Code.id == cid, Code.uses_left.is_not(None))
            .values(uses_left=Code.uses_left + 1, state="available", state_changed_at=now, purpose=None),
            execution_options={"synchronize_session": False},
        )
        await session.execute(
            update(Code).where(Code.id == cid, Code.uses_left.is_(None), Code.state == "issued")
            .values(state="available", state_changed_at=now, purpose=None),
            execution_options={"synchronize_session": False},
        )


async def _take_codes(
    session: AsyncSession, line: ChannelOrderLine, units: int, *, whole: int | None = None
) -> list[ChannelOrderCode]:
    """The open codes ``units`` take (unrevealed first); with ``whole`` (the units asked for), refuse when a
    redeemed code stands in the way of refunding them all."""
    held = list((await session.execute(
        select(ChannelOrderCode).where(ChannelOrderCode.line_id == line.id)
        .order_by(ChannelOrderCode.revealed, ChannelOrderCode.id).with_for_update()
    )).scalars())
    per_unit = max(1, len(held) // max(1, line.quantity))
    open_codes = [h for h in held if h.state in ("issued", "delivered")]
    redeemed = sum(1 for h in held if h.state == "redeemed")
    if whole is not None and redeemed and len(open_codes) < whole * per_unit:
        raise Conflict(f"{redeemed} of the order line's codes are redeemed: they cannot be refunded",
                       f"该订单明细已有 {redeemed} 张券码核销，不能退款", code="channel_refund_redeemed")
    return open_codes[: units * per_unit]


async def apply_refund(
    session: AsyncSession, account_id: uuid.UUID, notice: RefundNotice, kind: RefundKind, *, whole: bool = False
) -> ChannelRefund | None:
    """Apply a cancellation or refund once per ``refund_id``; ``None`` for a repeat. ``404
    channel_order_not_found`` for an order or line we do not have; with ``whole``, ``409
    channel_refund_redeemed`` when a code it needs is redeemed (the caller rolls back to its savepoint)."""
    order, line = await _order_line(session, account_id, notice)
    if line is None:
        raise NotFound(f"No line {notice.line_id} in channel order {notice.order_id}",
                       f"渠道订单 {notice.order_id} 中没有明细 {notice.line_id}", code="channel_order_not_found")
    refund_id = new_id()
    inserted = (await session.execute(
        _insert(session)(ChannelRefund).values(
            id=refund_id, account_id=account_id, line_id=line.id, refund_id=notice.refund_id[:100], kind=kind,
            quantity=max(0, notice.quantity), amount_fen=max(0, notice.amount_fen), returned=0, voided=0,
            reason=notice.reason[:500], created_at=utcnow(),
        ).on_conflict_do_nothing(index_elements=["tenant_id", "account_id", "refund_id"]).returning(ChannelRefund.id)
    )).scalar_one_or_none()
    if inserted is None:
        return None
    refund = (await session.execute(select(ChannelRefund).where(ChannelRefund.id == refund_id))).scalar_one()
    units = max(0, min(notice.quantity, line.quantity - line.refunded_quantity))
    taken = await _take_codes(session, line, units, whole=max(0, notice.quantity) if whole else None)
    back = [h for h in taken if not h.revealed]
    gone = [h for h in taken if h.revealed]
    now = utcnow()
    if back:
        await _return_to_stock(session, [h.code_id for h in back])
    if gone:
        await void_codes(session, sorted({h.code_id for h in gone}), f"channel {kind} {notice.refund_id}")
    for h in back:
        h.state, h.state_changed_at = "returned", now
    for h in gone:
        h.state, h.state_changed_at = "voided", now
    per_unit = max(1, len(taken) // max(1, units)) if taken else 1
    refunded_units = min(units, len(taken) // per_unit) if taken else 0
    refund.returned, refund.voided = len(back), len(gone)
    before = line.refunded_quantity
    line.refunded_quantity += refunded_units
    line.refunded_fen += max(0, notice.amount_fen)
    await session.flush()
    await split_refund(session, line, before=before, units=refunded_units, kind=kind, refund_id=notice.refund_id,
                       at=now)  # the sale rows of those units reversed (cumulative floor, see core.splits.engine)
    if refunded_units and line.listing_id is not None:
        await give_back_quota(session, line.listing_id, refunded_units)
    await _order_status(session, order, kind)
    facts = {"channel_order_id": order.channel_order_id, "line_id": notice.line_id, "refund_id": notice.refund_id,
             "kind": kind, "quantity": refunded_units, "returned": len(back), "voided": len(gone),
             "amount_fen": notice.amount_fen}
    record(session, "channel_order.refunded", "channel_order", order.id, facts)
    emit(session, "channel.order_refunded", order.id, facts)
    return refund


async def _order_status(session: AsyncSession, order: ChannelOrder, kind: RefundKind) -> None:
    lines = list((await session.execute(
        select(ChannelOrderLine.quantity, ChannelOrderLine.refunded_quantity)
        .where(ChannelOrderLine.order_id == order.id)
    )).all())
    if order.status == "refused" or not lines:
        return
    whole = all(r >= q for q, r in lines)
    if whole:
        order.status = "cancelled" if kind == "cancellation" else "refunded"
    elif order.status != "received":  # a delivery still under way goes on for what is left
        order.status = "partially_refunded"
    order.updated_at = utcnow()
