"""Channel orders are stored once and fulfilled from their listings' quotas.

An order is unique per account and channel order id: :func:`receive_order` inserts it or finds the one
already there. :func:`fulfil` checks it against the tenant's risk rules (keyed on the channel's buyer id,
phone and IP), takes each line's units from its listing's quota (:func:`core.channels.quotas.take_quota`,
an atomic conditional update) and allocates codes through :func:`core.inventory.allocation.allocate`, all
inside one savepoint: a refusal (unknown SKU, paused listing, quota or stock exhausted, risk) undoes every
line's quota and codes and leaves the order ``refused`` with the reason. Every line records gross price,
quantity, listing, the unit cost of each code's batch and the split rule in force (with its sale rows in
the split ledger, :mod:`core.channel_orders.splitting`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.channel_orders.models import ChannelOrder, ChannelOrderCode, ChannelOrderLine
from core.channel_orders.splitting import split_sale
from core.channels.models import Listing
from core.channels.quotas import take_quota
from core.channels.sync import request_push
from core.crypto.envelope import TenantCipher
from core.db.base import utcnow
from core.db.ids import new_id
from core.errors import DomainError
from core.events.services import emit
from core.inventory.allocation import OutOfStock, allocate
from core.inventory.models import Batch, Code
from core.inventory.vault import unseal
from core.members.services import digest_with, mask_phone, normalize_phone
from core.risk.gate import RiskRefused, RiskSubject, guard
from core.settings import Settings
from plugins import ChannelOrder as OrderIn
from plugins import IssuedCode

log = structlog.get_logger("kaquan.channel_orders")

#: Work done with the allocated lines before the quotas are taken (see :func:`fulfil`).
Then = Callable[[list[ChannelOrderLine]], Awaitable[None]]
#: Refusal reasons an order can end with (``ChannelOrder.refusal``; risk refusals add the rule's reason; the
#: allocation's own refusals keep their code, e.g. ``product_inactive``).
REFUSALS = ("unknown_sku", "listing_paused", "quota_exhausted", "out_of_stock", "bad_line", "risk")


class Refused(Exception):
    """The order cannot be fulfilled; ``reason`` is one of :data:`REFUSALS` (``risk:<rule reason>``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _insert(session: AsyncSession) -> Any:
    dialect = session.bind.dialect.name if session.bind is not None else ""
    return pg_insert if dialect == "postgresql" else sqlite_insert


def _phone(cipher: TenantCipher, raw: str) -> tuple[str, str | None]:
    """(masked, digest) of the buyer's phone when the channel gave a full mainland number, else (as given
    masked by the channel, no digest)."""
    if not raw.strip():
        return "", None
    try:
        e164 = normalize_phone(raw)
    except DomainError:
        return raw.strip()[:20], None  # channels often give a masked phone: keep it for display only
    return mask_phone(e164), digest_with(cipher, e164)


async def receive_order(
    session: AsyncSession, cipher: TenantCipher, account_id: uuid.UUID, order: OrderIn, *, source: str
) -> tuple[ChannelOrder, bool]:
    """The order stored once per (account, channel order id); ``True`` when this call stored it."""
    masked, digest = _phone(cipher, order.buyer.phone)
    now = utcnow()
    values: dict[str, Any] = {
        "id": new_id(),
        "account_id": account_id,
        "channel_order_id": order.order_id[:100],
        "status": "received",
        "source": source,
        "placed_at": order.placed_at,
        "deliver_by": order.deliver_by,
        "total_fen": sum(max(0, ln.quantity) * max(0, ln.unit_price_fen) for ln in order.lines),
        "buyer_id": order.buyer.id[:100],
        "buyer_phone_masked": masked,
        "buyer_phone_digest": digest,
        "buyer_ip": order.buyer.ip[:64],
        "referrer": order.buyer.referrer[:100],
        "kol": order.buyer.kol[:100],
        "attempts": 0,
        "next_attempt_at": None,
        "last_error": "",
        "refusal": "",
        "fulfilled_at": None,
        "updated_at": now,
        "created_at": now,
    }
    stmt = (
        _insert(session)(ChannelOrder)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["tenant_id", "account_id", "channel_order_id"])
        .returning(ChannelOrder.id)
    )
    inserted = (await session.execute(stmt)).scalar_one_or_none()
    row = (
        await session.execute(
            select(ChannelOrder).where(
                ChannelOrder.account_id == account_id, ChannelOrder.channel_order_id == values["channel_order_id"]
            )
        )
    ).scalar_one()
    if inserted is not None:
        record(session, "channel_order.received", "channel_order", row.id,
               {"account_id": str(account_id), "channel_order_id": row.channel_order_id, "source": source,
                "total_fen": row.total_fen})
        emit(session, "channel.order_received", row.id,
             {"account_id": str(account_id), "channel_order_id": row.channel_order_id, "total_fen": row.total_fen})
    return row, inserted is not None


def risk_subject(account_id: uuid.UUID, order: ChannelOrder) -> RiskSubject:
    """What the risk rules see of a channel order: the channel's buyer id (as the device dimension, scoped
    to the account), the phone digest when the channel gave a full number, and the buyer's IP."""
    return RiskSubject(
        phone_digest=order.buyer_phone_digest,
        ip=order.buyer_ip or None,
        device_id=f"channel:{account_id}:{order.buyer_id}" if order.buyer_id else None,
    )


@dataclass(frozen=True)
class _Line:
    line: Any  # plugins.OrderLine
    listing: Listing


async def _listings(session: AsyncSession, account_id: uuid.UUID, order: OrderIn) -> list[_Line]:
    if not order.lines:
        raise Refused("bad_line", "the order has no lines")
    skus = sorted({ln.sku for ln in order.lines})
    found = {
        lst.sku: lst
        for lst in (
            await session.execute(select(Listing).where(Listing.account_id == account_id, Listing.sku.in_(skus)))
        ).scalars()
    }
    out = []
    for ln in order.lines:
        if ln.quantity <= 0 or ln.unit_price_fen < 0:
            raise Refused("bad_line", f"line {ln.line_id}: quantity {ln.quantity}, price {ln.unit_price_fen}")
        listing = found.get(ln.sku)
        if listing is None:
            raise Refused("unknown_sku", f"no listing for SKU {ln.sku}")
        if listing.status != "active":
            raise Refused("listing_paused", f"the listing of SKU {ln.sku} is paused")
        out.append(_Line(ln, listing))
    return out


async def _allocate_lines(
    session: AsyncSession, order: ChannelOrder, lines: list[_Line], then: Then | None = None
) -> list[ChannelOrderLine]:
    """Allocate every line's codes, then take the listings' quotas (in listing id order, so concurrent orders
    lock alike). The quota is taken last: its row lock is the one concurrent orders of a listing queue on,
    so it is held only from here to the commit."""
    made: list[ChannelOrderLine] = []
    items = sorted(lines, key=lambda x: (x.listing.id, x.line.line_id))
    for item in items:
        ln, listing = item.line, item.listing
        try:
            allocation = await allocate(
                session, listing.product_id, ln.quantity, f"channel order {order.channel_order_id}"[:120]
            )
        except OutOfStock as exc:
            raise Refused("out_of_stock", exc.en) from exc
        except DomainError as exc:  # product inactive or without codes, quantity out of range
            raise Refused(exc.code, exc.en) from exc
        batch_ids = sorted({c.batch_id for c in allocation.codes})
        costs = dict(
            (await session.execute(select(Batch.id, Batch.unit_cost).where(Batch.id.in_(batch_ids)))).all()
        )
        line = ChannelOrderLine(
            id=new_id(), order_id=order.id, account_id=order.account_id, channel_line_id=ln.line_id[:100],
            sku=ln.sku[:100], listing_id=listing.id, product_id=listing.product_id, quantity=ln.quantity,
            unit_price_fen=ln.unit_price_fen, gross_fen=ln.quantity * ln.unit_price_fen,
            cost_fen=sum(int(costs.get(c.batch_id, 0)) for c in allocation.codes),
        )
        session.add(line)
        await session.flush()  # the line before its codes (composite foreign key)
        now = utcnow()
        session.add_all(
            ChannelOrderCode(line_id=line.id, code_id=c.id, batch_id=c.batch_id,
                             unit_cost_fen=int(costs.get(c.batch_id, 0)), state="issued", state_changed_at=now)
            for c in allocation.codes
        )
        made.append(line)
    await session.flush()
    await split_sale(session, order, made)  # the rule in force when placed, snapshotted; the sale's ledger rows
    if then is not None:
        await then(made)
    for account_id in sorted({item.listing.account_id for item in items}):
        await request_push(session, account_id)  # the channel hears of the quotas taken below
    record(session, "channel_order.allocated", "channel_order", order.id,
           {"channel_order_id": order.channel_order_id, "lines": len(made),
            "units": sum(item.line.quantity for item in items)})
    await session.flush()  # everything but the quotas written: their row locks are held only to the commit
    for item in items:
        if not await take_quota(session, item.listing.id, item.line.quantity, push=False):
            raise Refused("quota_exhausted", f"the quota of SKU {item.line.sku} is below {item.line.quantity}")
    return made


async def fulfil(
    session: AsyncSession, settings: Settings, order: ChannelOrder, order_in: OrderIn, *, then: Then | None = None
) -> list[ChannelOrderLine] | None:
    """Allocate the order's codes from its listings' quotas; ``None`` (order ``refused``) on a refusal.

    The risk gate counts the order's units for its buyer; quota and codes are taken in a savepoint that a
    refusal rolls back whole. ``then(lines)`` runs in that savepoint after the codes are allocated and before
    the quotas are taken (the quota rows are what concurrent orders queue on: the less done after, the
    shorter the queue).
    """
    units = sum(max(0, ln.quantity) for ln in order_in.lines)
    try:
        async with session.begin_nested():
            lines = await _listings(session, order.account_id, order_in)
            async with guard(session, settings, "grant", risk_subject(order.account_id, order), quantity=max(1, units)):
                made = await _allocate_lines(session, order, lines, then)
    except Refused as exc:
        await refuse(session, order, exc.reason, exc.detail)
        return None
    except RiskRefused as exc:
        reason = str((exc.extra or {}).get("reason", "")) if getattr(exc, "extra", None) else ""
        await refuse(session, order, f"risk:{reason}" if reason else "risk", str(exc))
        return None
    return made


async def refuse(session: AsyncSession, order: ChannelOrder, reason: str, detail: str = "") -> None:
    """Mark the order ``refused`` with ``reason`` (audited, event ``channel.order_refused``)."""
    await session.execute(
        update(ChannelOrder).where(ChannelOrder.id == order.id)
        .values(status="refused", refusal=reason[:60], last_error=detail[:500], updated_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    await session.refresh(order)
    facts = {"channel_order_id": order.channel_order_id, "account_id": str(order.account_id), "reason": reason}
    record(session, "channel_order.refused", "channel_order", order.id, {**facts, "detail": detail[:200]})
    emit(session, "channel.order_refused", order.id, facts)
    log.info("channel_order_refused", order=str(order.id), reason=reason)


async def order_codes(
    session: AsyncSession, cipher: TenantCipher, order_id: uuid.UUID, *, states: tuple[str, ...] | None = None
) -> list[tuple[ChannelOrderLine, ChannelOrderCode, IssuedCode]]:
    """The order's codes in plaintext, with their line and record (for delivery and the issue reply only:
    never log them)."""
    stmt = (
        select(ChannelOrderLine, ChannelOrderCode, Code)
        .join(ChannelOrderCode, ChannelOrderCode.line_id == ChannelOrderLine.id)
        .join(Code, Code.id == ChannelOrderCode.code_id)
        .where(ChannelOrderLine.order_id == order_id)
        .order_by(ChannelOrderLine.channel_line_id, ChannelOrderCode.id)
    )
    if states is not None:
        stmt = stmt.where(ChannelOrderCode.state.in_(states))
    out = []
    for line, held, code in (await session.execute(stmt)).all():
        number, pin = unseal(cipher, code.digest, code.secret)
        shown = "redeemed" if held.state == "redeemed" else ("voided" if held.state in ("voided", "returned") else "issued")
        out.append((line, held, IssuedCode(line_id=line.channel_line_id, code=number, pin=pin or "",
                                           expires_at=code.expires_at, state=shown)))  # type: ignore[arg-type]  # literal by construction
    return out


async def mark_handed_over(
    session: AsyncSession, line_ids: list[uuid.UUID], *, reference: str = "", now: dt.datetime | None = None
) -> None:
    """The channel has these lines' codes (delivered, or issued in a callback reply): the buyer can see them."""
    now = now or utcnow()
    await session.execute(
        update(ChannelOrderLine).where(ChannelOrderLine.id.in_(line_ids), ChannelOrderLine.delivered_at.is_(None))
        .values(delivered_at=now, delivery_ref=reference[:100]),
        execution_options={"synchronize_session": False},
    )
    await session.execute(
        update(ChannelOrderCode)
        .where(ChannelOrderCode.line_id.in_(line_ids), ChannelOrderCode.state == "issued")
        .values(state="delivered", revealed=True, delivered_at=now, state_changed_at=now),
        execution_options={"synchronize_session": False},
    )


async def mark_fulfilled(session: AsyncSession, order: ChannelOrder) -> None:
    """The order's codes are all with the channel (event ``channel.order_fulfilled``)."""
    now = utcnow()
    moved = await session.execute(
        update(ChannelOrder).where(ChannelOrder.id == order.id, ChannelOrder.status.in_(("received", "failed")))
        .values(status="fulfilled", fulfilled_at=now, updated_at=now, next_attempt_at=None, last_error="")
        .returning(ChannelOrder.id),
        execution_options={"synchronize_session": False},
    )
    if moved.first() is None:
        return
    facts = {"channel_order_id": order.channel_order_id, "account_id": str(order.account_id)}
    record(session, "channel_order.fulfilled", "channel_order", order.id, facts)
    emit(session, "channel.order_fulfilled", order.id, facts)
