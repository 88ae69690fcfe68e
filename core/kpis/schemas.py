"""What the KPI endpoints return: exact integer figures (money in fen) and ratios with their parts.

A :class:`Ratio` carries its numerator and denominator as integers, so a client can recompute it exactly;
``value`` is the quotient rounded to 4 decimals for display (``None`` when the denominator is zero), and
``flagged`` says whether it crosses the tenant-facing threshold (decided on the integers, never the float).
"""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

__all__ = [
    "BREAKAGE_BUCKETS",
    "BreakageBucket",
    "BreakageReport",
    "ChannelBreakage",
    "ChannelKpis",
    "DayPoint",
    "KpiReport",
    "Ratio",
    "Thresholds",
]

#: Ages of unredeemed sold value, by days since the order was placed; ``expired``: the code expired unused.
BREAKAGE_BUCKETS = ("0-30", "31-90", "91-180", "180+", "expired")


class Ratio(msgspec.Struct, kw_only=True):
    """``numerator / denominator``; ``value`` rounded for display, ``flagged`` decided on the integers."""

    numerator: int
    denominator: int
    value: float | None
    flagged: bool = False


class DayPoint(msgspec.Struct, kw_only=True):
    """One day (tenant zone) of sales: orders placed that day, their gross and their net of refunds."""

    day: str
    orders: int = 0
    gross_fen: int = 0
    net_fen: int = 0


class ChannelKpis(msgspec.Struct, kw_only=True):
    """The KPIs of one channel account (``account_id`` ``None``: all channels together) for the window."""

    account_id: uuid.UUID | None
    account_name: str
    connector_id: str
    orders: int
    units: int
    gross_fen: int
    refunded_fen: int
    net_fen: int
    split_cost_fen: int
    split_cost: Ratio
    refunded_orders: int
    refund_rate: Ratio
    complained_orders: int
    complaint_rate: Ratio
    codes_sold: int
    codes_delivered: int
    codes_redeemed: int
    redemption_rate: Ratio
    cost_of_sold_fen: int
    tenant_net_fen: int
    margin_fen: int
    margin: Ratio
    stock_value_fen: int
    turnover: Ratio
    daily: list[DayPoint] = msgspec.field(default_factory=list)


class Thresholds(msgspec.Struct, kw_only=True):
    """The thresholds the flags use, in basis points (turnover: times a year × 100)."""

    split_cost_above_bp: int
    refund_rate_from_bp: int
    complaint_rate_from_bp: int
    turnover_below_x100: int


class KpiReport(msgspec.Struct, kw_only=True):
    """KPIs of the orders placed in the window ``[since, until)`` (whole days in ``timezone``)."""

    window_days: int
    timezone: str
    since: dt.datetime
    until: dt.datetime
    thresholds: Thresholds
    overall: ChannelKpis
    channels: list[ChannelKpis]


class BreakageBucket(msgspec.Struct, kw_only=True):
    """Unredeemed sold codes of one age bucket and their value (pro rata of their line's gross, in fen)."""

    bucket: str
    codes: int = 0
    value_fen: int = 0


class ChannelBreakage(msgspec.Struct, kw_only=True):
    """Breakage of one channel account (``account_id`` ``None``: all channels)."""

    account_id: uuid.UUID | None
    account_name: str
    connector_id: str
    codes: int
    value_fen: int
    buckets: list[BreakageBucket]


class BreakageReport(msgspec.Struct, kw_only=True):
    """Value sold but never redeemed, as of ``as_of``, by age since the sale."""

    as_of: dt.datetime
    overall: ChannelBreakage
    channels: list[ChannelBreakage]
