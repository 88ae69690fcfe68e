"""Reading channel orders (list, one with lines, masked codes and refunds) and per-channel sales."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.channel_orders.models import (
    ORDER_STATUSES,
    ChannelOrder,
    ChannelOrderCode,
    ChannelOrderLine,
    ChannelRefund,
)
from core.channel_orders.schemas import (
    ChannelOrderOut,
    ChannelOrderPage,
    ChannelSales,
    OrderCodeOut,
    OrderLineOut,
    RefundOut,
    SalesFigures,
    SalesReport,
)
from core.connectors.models import ConnectorAccount
from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.paging import keyset_page
from core.db.session import get_scoped
from core.errors import FieldError, NotFound, ValidationFailed
from core.inventory.models import Code
from core.inventory.vault import masked
from tenants.models import Tenant

MAX_PAGE = 200
#: Orders whose codes went out: they count as sales (refunds are subtracted).
SOLD = ("fulfilled", "partially_refunded", "refunded", "cancelled")


async def _accounts(session: AsyncSession) -> dict[uuid.UUID, tuple[str, str]]:
    rows = await session.execute(
        select(ConnectorAccount.id, ConnectorAccount.name, ConnectorAccount.connector_id)
        .where(ConnectorAccount.kind == "sales_channel")
    )
    return {r.id: (r.name, r.connector_id) for r in rows}


def _order_out(order: ChannelOrder, accounts: dict[uuid.UUID, tuple[str, str]]) -> ChannelOrderOut:
    name, connector = accounts.get(order.account_id, ("", ""))
    return ChannelOrderOut(
        id=order.id, account_id=order.account_id, account_name=name, connector_id=connector,
        channel_order_id=order.channel_order_id, status=order.status, source=order.source,
        placed_at=order.placed_at, deliver_by=order.deliver_by, total_fen=order.total_fen,
        buyer_id=order.buyer_id, buyer_phone=order.buyer_phone_masked, referrer=order.referrer, kol=order.kol,
        attempts=order.attempts, refusal=order.refusal, last_error=order.last_error,
        fulfilled_at=order.fulfilled_at, created_at=order.created_at,
    )


async def list_orders(
    session: AsyncSession,
    *,
    cursor: uuid.UUID | None = None,
    limit: int = 50,
    account_id: uuid.UUID | None = None,
    status: str | None = None,
    placed_since: dt.datetime | None = None,
    placed_until: dt.datetime | None = None,
) -> ChannelOrderPage:
    """Orders newest first, by account and status; ``placed_since``/``placed_until`` bound the time the buyer
    placed the order (``[since, until)``)."""
    if status is not None and status not in ORDER_STATUSES:
        raise ValidationFailed(f"Unknown status {status!r}", f"未知的状态 {status!r}",
                               errors=[FieldError(field="status", message="unknown", code="unknown")])
    stmt = select(ChannelOrder)
    if account_id is not None:
        stmt = stmt.where(ChannelOrder.account_id == account_id)
    if status is not None:
        stmt = stmt.where(ChannelOrder.status == status)
    if placed_since is not None:
        stmt = stmt.where(ChannelOrder.placed_at >= placed_since)
    if placed_until is not None:
        stmt = stmt.where(ChannelOrder.placed_at < placed_until)
    page = await keyset_page(session, stmt, ChannelOrder.id, cursor=cursor, limit=min(limit, MAX_PAGE))
    accounts = await _accounts(session)
    return ChannelOrderPage([_order_out(o, accounts) for o in page.items], page.next_cursor)


async def get_order(session: AsyncSession, order_id: uuid.UUID) -> ChannelOrderOut:
    """One order with its lines, masked codes and refunds; ``404 channel_order_not_found``."""
    order = await get_scoped(session, ChannelOrder, order_id)
    if order is None:
        raise NotFound("Channel order not found", "渠道订单不存在", code="channel_order_not_found")
    out = _order_out(order, await _accounts(session))
    lines = list((await session.execute(
        select(ChannelOrderLine).where(ChannelOrderLine.order_id == order.id).order_by(ChannelOrderLine.channel_line_id)
    )).scalars())
    codes: dict[uuid.UUID, list[OrderCodeOut]] = defaultdict(list)
    if lines:
        for held, last4 in (await session.execute(
            select(ChannelOrderCode, Code.last4).join(Code, Code.id == ChannelOrderCode.code_id)
            .where(ChannelOrderCode.line_id.in_([ln.id for ln in lines])).order_by(ChannelOrderCode.id)
        )).all():
            codes[held.line_id].append(OrderCodeOut(
                id=held.id, code_id=held.code_id, masked=masked(last4), state=held.state, revealed=held.revealed,
                unit_cost_fen=held.unit_cost_fen, delivered_at=held.delivered_at, redeemed_at=held.redeemed_at,
                redeemed_via=held.redeemed_via))
    out.lines = [
        OrderLineOut(id=ln.id, channel_line_id=ln.channel_line_id, sku=ln.sku, listing_id=ln.listing_id,
                     product_id=ln.product_id, quantity=ln.quantity, unit_price_fen=ln.unit_price_fen,
                     gross_fen=ln.gross_fen, cost_fen=ln.cost_fen, split_rule=dict(ln.split_rule or {}),
                     refunded_quantity=ln.refunded_quantity, refunded_fen=ln.refunded_fen,
                     delivered_at=ln.delivered_at, codes=codes.get(ln.id, []))
        for ln in lines
    ]
    if lines:
        out.refunds = [
            RefundOut(id=r.id, line_id=r.line_id, refund_id=r.refund_id, kind=r.kind, quantity=r.quantity,
                      amount_fen=r.amount_fen, returned=r.returned, voided=r.voided, reason=r.reason,
                      created_at=r.created_at)
            for r in (await session.execute(
                select(ChannelRefund).where(ChannelRefund.line_id.in_([ln.id for ln in lines]))
                .order_by(ChannelRefund.id)
            )).scalars()
        ]
    return out


def period_starts(now: dt.datetime, timezone: str) -> tuple[dt.datetime, dt.datetime, dt.datetime]:
    """(today, this week from Monday, this month) starts in the tenant's zone, as UTC instants."""
    try:
        tz = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = zoneinfo.ZoneInfo("Asia/Shanghai")
    local = now.astimezone(tz)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    week = day - dt.timedelta(days=day.weekday())
    month = day.replace(day=1)
    return tuple(d.astimezone(dt.UTC) for d in (day, week, month))  # type: ignore[return-value]  # three items


async def _figures(session: AsyncSession, since: dt.datetime) -> dict[uuid.UUID, SalesFigures]:
    rows = await session.execute(
        select(ChannelOrderLine.account_id, func.count(func.distinct(ChannelOrderLine.order_id)),
               func.coalesce(func.sum(ChannelOrderLine.quantity), 0),
               func.coalesce(func.sum(ChannelOrderLine.gross_fen), 0),
               func.coalesce(func.sum(ChannelOrderLine.refunded_fen), 0))
        .join(ChannelOrder, ChannelOrder.id == ChannelOrderLine.order_id)
        .where(ChannelOrder.placed_at >= since, ChannelOrder.status.in_(SOLD))
        .group_by(ChannelOrderLine.account_id)
    )
    out: dict[uuid.UUID, SalesFigures] = {}
    for account_id, orders, units, gross, refunded in rows.all():
        out[account_id] = SalesFigures(int(orders), int(units), int(gross), int(refunded), int(gross) - int(refunded))
    return out


async def sales_report(session: AsyncSession, now: dt.datetime | None = None) -> SalesReport:
    """Per-channel sales today, this week and this month (tenant time zone)."""
    tenant = await session.get(Tenant, require_tenant())
    zone = tenant.timezone if tenant is not None else "Asia/Shanghai"
    day, week, month = period_starts(now or utcnow(), zone)
    figures: list[dict[uuid.UUID, SalesFigures]] = [await _figures(session, s) for s in (day, week, month)]
    accounts = await _accounts(session)
    channels = [
        ChannelSales(account_id=aid, account_name=name, connector_id=connector,
                     today=figures[0].get(aid, SalesFigures()), week=figures[1].get(aid, SalesFigures()),
                     month=figures[2].get(aid, SalesFigures()))
        for aid, (name, connector) in sorted(accounts.items(), key=lambda kv: kv[1][0])
    ]
    return SalesReport(timezone=zone, today_from=day, week_from=week, month_from=month, channels=channels)
