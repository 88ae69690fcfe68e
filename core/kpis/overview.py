"""The console overview (数据概览): today's and this week's figures and the daily trends of the last 14 or
30 days, each an aggregate in SQL over the tenant's rows (never rows read into Python).

Periods are whole days in the tenant's zone: *today*, and *this week* from Monday. Figures:

- grants: grants created; claims: personal claim links bound to a phone plus campaign claims;
- redemptions: redemptions not rolled back;
- redemption rate: of the codes handed out by the period's grants (not voided, not passed on by a
  transfer), the share redeemed so far;
- stock value at cost (as :func:`core.kpis.queries.stock_value`) and the available codes whose expiry falls
  in the next 30 days (count and value at cost);
- channel sales: orders placed on sales channels whose codes went out (the KPI page's ``SOLD`` statuses),
  their count and their value net of refunds (fen).

A figure is computed only when the caller asks for its section (the page asks for what the user's role may
read): ``grants`` (grants, claims, redemptions), ``stock`` and ``channels``.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Collection
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, Select, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.campaigns.models import Campaign, CampaignClaim
from core.catalog.models import Product
from core.channel_orders.models import ChannelOrder, ChannelOrderLine
from core.channel_orders.queries import SOLD
from core.claims.models import ClaimLink
from core.db.base import utcnow
from core.errors import FieldError, ValidationFailed
from core.grants.models import Grant, GrantItem
from core.inventory.models import Batch, Code
from core.kpis.queries import day_bounds, day_column, stock_value
from core.kpis.schemas import Ratio
from core.redemption.models import Redemption
from core.splits.ledger import tenant_zone

__all__ = ["EXPIRY_DAYS", "SECTIONS", "TREND_WINDOWS", "Overview", "overview", "trend_window"]

TREND_WINDOWS = (14, 30)
SECTIONS = ("grants", "stock", "channels")
EXPIRY_DAYS = 30
Bounds = list[tuple[str, dt.datetime, dt.datetime]]


class PeriodFigures(msgspec.Struct, kw_only=True):
    """One period ``[since, until)``; ``first_day``/``last_day`` are its days in the tenant's zone."""

    first_day: str
    last_day: str
    since: dt.datetime
    until: dt.datetime
    grants: int = 0
    claims: int = 0
    redemptions: int = 0
    redemption_rate: Ratio = msgspec.field(default_factory=lambda: Ratio(numerator=0, denominator=0, value=None))
    channel_orders: int = 0
    channel_net_fen: int = 0


class TrendDay(msgspec.Struct, kw_only=True):
    day: str
    grants: int = 0
    redemptions: int = 0
    channel_orders: int = 0
    channel_net_fen: int = 0


class Setup(msgspec.Struct, kw_only=True):
    """How far the tenant got: what the empty state's next steps look at."""

    products: int
    codes: int
    campaigns: int
    grants: int

    @property
    def empty(self) -> bool:
        return not (self.codes or self.grants)


class Overview(msgspec.Struct, kw_only=True):
    timezone: str
    sections: list[str]
    today: PeriodFigures
    week: PeriodFigures
    trend_days: int
    trend: list[TrendDay]
    setup: Setup
    stock_value_fen: int = 0
    expiring_codes: int = 0
    expiring_value_fen: int = 0
    expiry_until: dt.datetime | None = None


def trend_window(days: int) -> int:
    """``days`` if it is one of :data:`TREND_WINDOWS`; ``422 overview_window_unknown`` otherwise."""
    if days not in TREND_WINDOWS:
        raise ValidationFailed(
            "The trend covers 14 or 30 days", "趋势图只能查看近 14 天或近 30 天", code="overview_window_unknown",
            errors=[FieldError(field="days", message="14 or 30", code="unknown")])
    return days


def _int(value: object) -> int:
    return int(value or 0)  # type: ignore[call-overload]  # SQL counts and sums: int, Decimal or None


def _period(now: dt.datetime, zone: str, days: int) -> PeriodFigures:
    bounds = day_bounds(now, zone, days)
    return PeriodFigures(first_day=bounds[0][0], last_day=bounds[-1][0], since=bounds[0][1], until=bounds[-1][2])


def _within(column: Any, p: PeriodFigures) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return column >= p.since, column < p.until


async def _grant_figures(session: AsyncSession, p: PeriodFigures) -> None:
    p.grants = _int(await session.scalar(select(func.count()).select_from(Grant).where(*_within(Grant.created_at, p))))
    links = await session.scalar(select(func.count()).select_from(ClaimLink)
                                 .where(ClaimLink.source == "api", *_within(ClaimLink.bound_at, p)))
    claims = await session.scalar(select(func.count()).select_from(CampaignClaim)
                                  .where(CampaignClaim.grant_id.is_not(None), *_within(CampaignClaim.created_at, p)))
    p.claims = _int(links) + _int(claims)
    p.redemptions = _int(await session.scalar(
        select(func.count()).select_from(Redemption)
        .where(Redemption.status == "redeemed", *_within(Redemption.created_at, p))))
    counted = GrantItem.status.not_in(("voided", "transferred"))
    row = (await session.execute(
        select(func.count(), func.sum(case((GrantItem.status == "redeemed", 1), else_=0)))
        .select_from(GrantItem).join(Grant, Grant.id == GrantItem.grant_id)
        .where(counted, *_within(Grant.created_at, p)))).one()
    handed, redeemed = _int(row[0]), _int(row[1])
    p.redemption_rate = Ratio(numerator=redeemed, denominator=handed,
                              value=round(redeemed / handed, 4) if handed else None)


def _sales() -> Select[*tuple[Any, ...]]:
    line = ChannelOrderLine
    return (select(func.count(func.distinct(line.order_id)), func.sum(line.gross_fen - line.refunded_fen))
            .select_from(line).join(ChannelOrder, ChannelOrder.id == line.order_id)
            .where(ChannelOrder.status.in_(SOLD)))


async def _channel_figures(session: AsyncSession, p: PeriodFigures) -> None:
    orders, net = (await session.execute(_sales().where(*_within(ChannelOrder.placed_at, p)))).one()
    p.channel_orders, p.channel_net_fen = _int(orders), _int(net)


async def _per_day(session: AsyncSession, stmt: Select[*tuple[Any, ...]], column: Any, zone: str, bounds: Bounds) -> dict[str, tuple[int, ...]]:
    """``stmt``'s aggregates per tenant-zone day of ``column`` within ``bounds``."""
    day, join = day_column(session, column, zone, bounds)
    stmt = stmt.add_columns(day).where(column >= bounds[0][1], column < bounds[-1][2])
    if join:
        stmt = stmt.join(join[0], join[1])  # type: ignore[arg-type]  # the days subquery and its ON clause
    rows = await session.execute(stmt.group_by(day))
    return {str(r[-1]): tuple(_int(v) for v in r[:-1]) for r in rows.all()}


async def _trend(session: AsyncSession, sections: Collection[str], zone: str, bounds: Bounds) -> list[TrendDay]:
    grants: dict[str, tuple[int, ...]] = {}
    redemptions: dict[str, tuple[int, ...]] = {}
    sales: dict[str, tuple[int, ...]] = {}
    if "grants" in sections:
        grants = await _per_day(session, select(func.count(Grant.id)).select_from(Grant), Grant.created_at,
                                zone, bounds)
        redemptions = await _per_day(
            session, select(func.count(Redemption.id)).select_from(Redemption).where(Redemption.status == "redeemed"),
            Redemption.created_at, zone, bounds)
    if "channels" in sections:
        sales = await _per_day(session, _sales(), ChannelOrder.placed_at, zone, bounds)
    return [TrendDay(day=d, grants=grants.get(d, (0,))[0], redemptions=redemptions.get(d, (0,))[0],
                     channel_orders=sales.get(d, (0, 0))[0], channel_net_fen=sales.get(d, (0, 0))[1])
            for d, _, _ in bounds]


async def _setup(session: AsyncSession) -> Setup:
    async def count(model: Any) -> int:
        return _int(await session.scalar(select(func.count()).select_from(model)))

    return Setup(products=await count(Product), codes=await count(Code), campaigns=await count(Campaign),
                 grants=await count(Grant))


async def _expiring(session: AsyncSession, now: dt.datetime) -> tuple[int, int]:
    row = (await session.execute(
        select(func.count(Code.id), func.sum(Batch.unit_cost)).select_from(Code).join(Batch, Batch.id == Code.batch_id)
        .where(Code.state == "available", Code.expires_at >= now,
               Code.expires_at < now + dt.timedelta(days=EXPIRY_DAYS)))).one()
    return _int(row[0]), _int(row[1])


def _monday(now: dt.datetime, zone: str) -> int:
    """Days of this week so far, today included (weeks start on Monday)."""
    return now.astimezone(zoneinfo.ZoneInfo(zone)).weekday() + 1


async def overview(session: AsyncSession, sections: Collection[str] = SECTIONS, *, days: int = 14,
                   now: dt.datetime | None = None) -> Overview:
    """The overview of the tenant in context (see the module doc); only the ``sections`` asked for."""
    trend_window(days)
    now = now or utcnow()
    zone = await tenant_zone(session)
    today, week = _period(now, zone, 1), _period(now, zone, _monday(now, zone))
    report = Overview(timezone=zone, sections=[s for s in SECTIONS if s in sections], today=today, week=week,
                      trend_days=days, trend=[], setup=await _setup(session))
    for p in (today, week):
        if "grants" in sections:
            await _grant_figures(session, p)
        if "channels" in sections:
            await _channel_figures(session, p)
    if "stock" in sections:
        report.stock_value_fen = await stock_value(session)
        report.expiring_codes, report.expiring_value_fen = await _expiring(session, now)
        report.expiry_until = now + dt.timedelta(days=EXPIRY_DAYS)
    report.trend = await _trend(session, sections, zone, day_bounds(now, zone, days))
    return report
