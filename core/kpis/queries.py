"""The KPIs of consignment per channel account and overall, aggregated in SQL (never rows in Python).

Every window figure is about the **orders placed in the window** (whole days in the tenant's zone, the
last one being today) whose codes went out (``SOLD`` statuses), followed to today: their refunds, their
ledger rows and their codes' fate so far. Definitions (docs/settlement.md, "KPIs", says the same):

- sales: orders, units, gross; net = gross − refunded gross; a daily series of orders, gross and net;
- split cost ratio = the non-tenant split-ledger rows of those orders' lines / net sales (flag > 15%);
- refund rate = refunded gross / gross (flag ≥ 2%); complaint rate = orders with a complaint / orders
  (flag ≥ 2%);
- redemption rate = redeemed codes / codes delivered to the channel and not refunded;
- cost of codes sold = the batch unit cost of the lines' codes not returned to stock (voided ones count:
  they left the stock); margin = the tenant's split rows − cost of codes sold (flag when negative);
- stock turnover per year = cost of codes sold × 365 / window days, over the stock value at cost now
  (available codes × their batch's unit cost; flag below 3). Per channel, the stock is that of the
  products the channel lists (stock shared by several channels counts in full for each of them);
- breakage: codes sold (order in a ``SOLD`` status) still unredeemed, valued pro rata of their line's
  gross (``floor(gross × open codes / codes of the line)``), by days since the order: 0–30, 31–90,
  91–180, over 180; codes past their expiry are in ``expired`` whatever their age.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, String, and_, case, func, literal, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from core.channel_orders.models import ChannelComplaint, ChannelOrder, ChannelOrderCode, ChannelOrderLine
from core.channel_orders.queries import SOLD
from core.channels.models import Listing
from core.connectors.models import ConnectorAccount
from core.db.base import UTCDateTime, utcnow
from core.errors import FieldError, ValidationFailed
from core.inventory.models import Batch, Code
from core.kpis.schemas import (
    BREAKAGE_BUCKETS,
    BreakageBucket,
    BreakageReport,
    ChannelBreakage,
    ChannelKpis,
    DayPoint,
    KpiReport,
    Ratio,
    Thresholds,
)
from core.splits.ledger import tenant_zone
from core.splits.models import SplitEntry

__all__ = ["THRESHOLDS", "WINDOWS", "breakage", "day_bounds", "day_column", "kpis", "stock_value", "window_days"]

WINDOWS = (7, 30, 90, 365)
THRESHOLDS = Thresholds(split_cost_above_bp=1500, refund_rate_from_bp=200, complaint_rate_from_bp=200,
                        turnover_below_x100=300)
#: Upper bounds (exclusive, in days since the sale) of the age buckets before "180+".
AGE_LIMITS = ((31, "0-30"), (91, "31-90"), (181, "91-180"))

L, Ord, C = ChannelOrderLine, ChannelOrder, ChannelOrderCode
S = TypeVar("S", bound="Select[*tuple[Any, ...]]")


@dataclass
class _Figures:
    """The integer parts of one account's KPIs, filled by the aggregate queries."""

    orders: int = 0
    units: int = 0
    gross: int = 0
    refunded: int = 0
    refunded_orders: int = 0
    split_cost: int = 0
    tenant_net: int = 0
    complained: int = 0
    codes_sold: int = 0
    delivered: int = 0
    redeemed: int = 0
    cost_of_sold: int = 0
    stock_value: int = 0
    daily: dict[str, list[int]] = field(default_factory=dict)  # day → [orders, gross, refunded]

    def add(self, other: _Figures) -> None:
        for name in ("orders", "units", "gross", "refunded", "refunded_orders", "split_cost", "tenant_net",
                     "complained", "codes_sold", "delivered", "redeemed", "cost_of_sold"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for day, values in other.daily.items():
            mine = self.daily.setdefault(day, [0, 0, 0])
            for i, v in enumerate(values):
                mine[i] += v


def window_days(days: int) -> int:
    """``days`` if it is one of :data:`WINDOWS`; ``422 kpi_window_unknown`` otherwise."""
    if days not in WINDOWS:
        raise ValidationFailed(
            f"The window must be one of {', '.join(map(str, WINDOWS))} days",
            f"统计区间只能是 {'、'.join(map(str, WINDOWS))} 天", code="kpi_window_unknown",
            errors=[FieldError(field="days", message="unknown window", code="unknown")])
    return days


def day_bounds(now: dt.datetime, zone: str, days: int) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """The ``days`` whole days in ``zone`` ending with today: (``YYYY-MM-DD``, start, end) in UTC."""
    tz = zoneinfo.ZoneInfo(zone)
    first = now.astimezone(tz).date() - dt.timedelta(days=days - 1)
    starts = [dt.datetime.combine(first + dt.timedelta(days=i), dt.time(), tzinfo=tz).astimezone(dt.UTC)
              for i in range(days + 1)]
    return [((first + dt.timedelta(days=i)).isoformat(), starts[i], starts[i + 1]) for i in range(days)]


def _cohort(stmt: S, since: dt.datetime, until: dt.datetime) -> S:
    return stmt.where(Ord.placed_at >= since, Ord.placed_at < until, Ord.status.in_(SOLD))


def _int(value: object) -> int:
    return int(value or 0)  # type: ignore[call-overload]  # SQL sums: int, Decimal or None


async def _sales(session: AsyncSession, figs: dict[uuid.UUID, _Figures], since: dt.datetime,
                 until: dt.datetime) -> None:
    refunded_order = case((or_(L.refunded_quantity > 0, L.refunded_fen > 0), L.order_id), else_=None)
    rows = await session.execute(_cohort(
        select(L.account_id, func.count(func.distinct(L.order_id)), func.sum(L.quantity), func.sum(L.gross_fen),
               func.sum(L.refunded_fen), func.count(func.distinct(refunded_order)))
        .join(Ord, Ord.id == L.order_id), since, until).group_by(L.account_id))
    for account_id, orders, units, gross, refunded, refunded_orders in rows.all():
        f = figs[account_id]
        f.orders, f.units, f.gross = _int(orders), _int(units), _int(gross)
        f.refunded, f.refunded_orders = _int(refunded), _int(refunded_orders)


async def _splits(session: AsyncSession, figs: dict[uuid.UUID, _Figures], since: dt.datetime,
                  until: dt.datetime) -> None:
    tenant = SplitEntry.party == "tenant"
    rows = await session.execute(_cohort(
        select(L.account_id, func.sum(case((tenant, 0), else_=SplitEntry.amount_fen)),
               func.sum(case((tenant, SplitEntry.amount_fen), else_=0)))
        .select_from(SplitEntry).join(L, L.id == SplitEntry.line_id).join(Ord, Ord.id == L.order_id),
        since, until).group_by(L.account_id))
    for account_id, others, tenant_net in rows.all():
        figs[account_id].split_cost, figs[account_id].tenant_net = _int(others), _int(tenant_net)


async def _codes(session: AsyncSession, figs: dict[uuid.UUID, _Figures], since: dt.datetime,
                 until: dt.datetime) -> None:
    kept = C.state != "returned"
    rows = await session.execute(_cohort(
        select(L.account_id, func.sum(case((kept, 1), else_=0)),
               func.sum(case((C.state.in_(("delivered", "redeemed")), 1), else_=0)),
               func.sum(case((C.state == "redeemed", 1), else_=0)),
               func.sum(case((kept, C.unit_cost_fen), else_=0)))
        .select_from(C).join(L, L.id == C.line_id).join(Ord, Ord.id == L.order_id), since, until)
        .group_by(L.account_id))
    for account_id, sold, delivered, redeemed, cost in rows.all():
        f = figs[account_id]
        f.codes_sold, f.delivered, f.redeemed, f.cost_of_sold = _int(sold), _int(delivered), _int(redeemed), _int(cost)


async def _complaints(session: AsyncSession, figs: dict[uuid.UUID, _Figures], since: dt.datetime,
                      until: dt.datetime) -> None:
    rows = await session.execute(_cohort(
        select(Ord.account_id, func.count(func.distinct(ChannelComplaint.order_id)))
        .select_from(ChannelComplaint).join(Ord, Ord.id == ChannelComplaint.order_id), since, until)
        .group_by(Ord.account_id))
    for account_id, complained in rows.all():
        figs[account_id].complained = _int(complained)


def _stock_by_product() -> Select[*tuple[Any, ...]]:
    return (select(Code.product_id.label("product_id"), func.sum(Batch.unit_cost).label("value"))
            .select_from(Code).join(Batch, Batch.id == Code.batch_id).where(Code.state == "available")
            .group_by(Code.product_id))


async def _stock(session: AsyncSession, figs: dict[uuid.UUID, _Figures]) -> int:
    """Each account's stock value at cost (the products it lists); returns the whole stock's value."""
    per_product = _stock_by_product().subquery()
    listed = select(Listing.account_id, Listing.product_id).distinct().subquery()
    rows = await session.execute(
        select(listed.c.account_id, func.sum(per_product.c.value))
        .select_from(listed).join(per_product, per_product.c.product_id == listed.c.product_id)
        .group_by(listed.c.account_id))
    for account_id, value in rows.all():
        if account_id in figs:
            figs[account_id].stock_value = _int(value)
    return await stock_value(session)


async def stock_value(session: AsyncSession) -> int:
    """The whole stock's value at cost: available codes × their batch's unit cost (fen)."""
    return _int(await session.scalar(select(func.sum(_stock_by_product().subquery().c.value))))


def day_column(session: AsyncSession, column: Any, zone: str,
               bounds: list[tuple[str, dt.datetime, dt.datetime]]) -> tuple[ColumnElement[str], list[object]]:
    """The tenant-zone day (``YYYY-MM-DD``) of the timestamp ``column``, for a ``GROUP BY``: on PostgreSQL
    ``to_char(date_trunc('day', column AT TIME ZONE zone))``; elsewhere (SQLite has no time zones) a join on
    the window's day boundaries, returned as ``[subquery, on-clause]`` for the caller to join."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.date_trunc("day", func.timezone(zone, column)), "YYYY-MM-DD"), []
    days = union_all(*(
        select(literal(day, String).label("day"), literal(lo, UTCDateTime()).label("lo"),
               literal(hi, UTCDateTime()).label("hi"))
        for day, lo, hi in bounds)).subquery("days")
    return days.c.day, [days, and_(column >= days.c.lo, column < days.c.hi)]


async def _daily(session: AsyncSession, figs: dict[uuid.UUID, _Figures], zone: str,
                 bounds: list[tuple[str, dt.datetime, dt.datetime]]) -> None:
    day, join = day_column(session, Ord.placed_at, zone, bounds)
    stmt = select(L.account_id, day, func.count(func.distinct(L.order_id)), func.sum(L.gross_fen),
                  func.sum(L.refunded_fen)).select_from(L).join(Ord, Ord.id == L.order_id)
    if join:
        stmt = stmt.join(join[0], join[1])  # type: ignore[arg-type]  # the days subquery and its ON clause
    rows = await session.execute(_cohort(stmt, bounds[0][1], bounds[-1][2]).group_by(L.account_id, day))
    for account_id, d, orders, gross, refunded in rows.all():
        figs[account_id].daily[str(d)] = [_int(orders), _int(gross), _int(refunded)]


def _ratio(numerator: int, denominator: int, flagged: bool = False) -> Ratio:
    value = round(numerator / denominator, 4) if denominator else None
    return Ratio(numerator=numerator, denominator=denominator, value=value, flagged=flagged)


def _kpis(account_id: uuid.UUID | None, name: str, connector: str, f: _Figures, days: int,
          day_names: Iterable[str]) -> ChannelKpis:
    t = THRESHOLDS
    net = f.gross - f.refunded
    margin = f.tenant_net - f.cost_of_sold
    annual_cost = f.cost_of_sold * 365 // days
    daily = [DayPoint(day=d, orders=v[0], gross_fen=v[1], net_fen=v[1] - v[2])
             for d in day_names for v in [f.daily.get(d, [0, 0, 0])]]
    return ChannelKpis(
        account_id=account_id, account_name=name, connector_id=connector, orders=f.orders, units=f.units,
        gross_fen=f.gross, refunded_fen=f.refunded, net_fen=net, split_cost_fen=f.split_cost,
        split_cost=_ratio(f.split_cost, net, f.split_cost * 10_000 > net * t.split_cost_above_bp
                          if net > 0 else f.split_cost > 0),
        refunded_orders=f.refunded_orders,
        refund_rate=_ratio(f.refunded, f.gross, f.gross > 0 and f.refunded * 10_000 >= f.gross * t.refund_rate_from_bp),
        complained_orders=f.complained,
        complaint_rate=_ratio(f.complained, f.orders,
                              f.orders > 0 and f.complained * 10_000 >= f.orders * t.complaint_rate_from_bp),
        codes_sold=f.codes_sold, codes_delivered=f.delivered, codes_redeemed=f.redeemed,
        redemption_rate=_ratio(f.redeemed, f.delivered),
        cost_of_sold_fen=f.cost_of_sold, tenant_net_fen=f.tenant_net, margin_fen=margin,
        margin=_ratio(margin, net, margin < 0), stock_value_fen=f.stock_value,
        turnover=_ratio(annual_cost, f.stock_value,
                        f.stock_value > 0 and annual_cost * 100 < f.stock_value * t.turnover_below_x100),
        daily=daily,
    )


async def _accounts(session: AsyncSession) -> list[tuple[uuid.UUID, str, str]]:
    rows = await session.execute(
        select(ConnectorAccount.id, ConnectorAccount.name, ConnectorAccount.connector_id)
        .where(ConnectorAccount.kind == "sales_channel").order_by(ConnectorAccount.name))
    return [(r.id, r.name, r.connector_id) for r in rows]


async def kpis(session: AsyncSession, days: int = 30, now: dt.datetime | None = None) -> KpiReport:
    """The KPIs of the orders placed in the last ``days`` days (tenant zone), per channel and overall."""
    window_days(days)
    zone = await tenant_zone(session)
    bounds = day_bounds(now or utcnow(), zone, days)
    since, until = bounds[0][1], bounds[-1][2]
    accounts = await _accounts(session)
    figs: dict[uuid.UUID, _Figures] = defaultdict(_Figures)
    for aid, _, _ in accounts:
        figs[aid] = _Figures()
    await _sales(session, figs, since, until)
    await _splits(session, figs, since, until)
    await _codes(session, figs, since, until)
    await _complaints(session, figs, since, until)
    await _daily(session, figs, zone, bounds)
    whole_stock = await _stock(session, figs)
    names = [d for d, _, _ in bounds]
    total = _Figures()
    for aid, _, _ in accounts:
        total.add(figs[aid])
    total.stock_value = whole_stock
    return KpiReport(
        window_days=days, timezone=zone, since=since, until=until, thresholds=THRESHOLDS,
        overall=_kpis(None, "", "", total, days, names),
        channels=[_kpis(aid, name, connector, figs[aid], days, names) for aid, name, connector in accounts],
    )


async def breakage(session: AsyncSession, now: dt.datetime | None = None) -> BreakageReport:
    """Value sold but never redeemed, per channel and overall, by age since the sale (see module doc)."""
    now = now or utcnow()
    open_code = C.state.in_(("issued", "delivered"))
    expired = and_(Code.expires_at.is_not(None), Code.expires_at < now)
    per_line = (
        select(L.account_id.label("account_id"), Ord.placed_at.label("placed_at"), L.gross_fen.label("gross"),
               func.count(C.id).label("n"),
               func.sum(case((and_(open_code, ~expired), 1), else_=0)).label("live"),
               func.sum(case((and_(open_code, expired), 1), else_=0)).label("dead"))
        .select_from(L).join(Ord, Ord.id == L.order_id).join(C, C.line_id == L.id).join(Code, Code.id == C.code_id)
        .where(Ord.status.in_(SOLD)).group_by(L.id, L.account_id, Ord.placed_at, L.gross_fen)
    ).subquery()
    bucket = case(*((per_line.c.placed_at > now - dt.timedelta(days=limit), name) for limit, name in AGE_LIMITS),
                  else_="180+")
    found: dict[uuid.UUID, dict[str, list[int]]] = defaultdict(dict)
    for account_id, name, live, live_value, dead, dead_value in (await session.execute(
        select(per_line.c.account_id, bucket, func.sum(per_line.c.live),
               func.sum(per_line.c.gross * per_line.c.live // per_line.c.n), func.sum(per_line.c.dead),
               func.sum(per_line.c.gross * per_line.c.dead // per_line.c.n))
        .where(or_(per_line.c.live > 0, per_line.c.dead > 0)).group_by(per_line.c.account_id, bucket)
    )).all():
        mine = found[account_id]
        mine[str(name)] = [_int(live), _int(live_value)]
        gone = mine.setdefault("expired", [0, 0])
        gone[0] += _int(dead)
        gone[1] += _int(dead_value)
    accounts = await _accounts(session)
    total: dict[str, list[int]] = {}
    for aid, _, _ in accounts:
        for name, (codes, value) in found.get(aid, {}).items():
            slot = total.setdefault(name, [0, 0])
            slot[0] += codes
            slot[1] += value
    return BreakageReport(
        as_of=now, overall=_breakage(None, "", "", total),
        channels=[_breakage(aid, name, connector, found.get(aid, {})) for aid, name, connector in accounts],
    )


def _breakage(account_id: uuid.UUID | None, name: str, connector: str,
              found: dict[str, list[int]]) -> ChannelBreakage:
    buckets = [BreakageBucket(bucket=b, codes=found.get(b, [0, 0])[0], value_fen=found.get(b, [0, 0])[1])
               for b in BREAKAGE_BUCKETS]
    return ChannelBreakage(account_id=account_id, account_name=name, connector_id=connector,
                           codes=sum(b.codes for b in buckets), value_fen=sum(b.value_fen for b in buckets),
                           buckets=buckets)
