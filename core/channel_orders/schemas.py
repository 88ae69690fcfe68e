"""What the channel-orders API and console show: orders with their lines and masked codes, per-channel sales.

Money is integer fen; codes are masked (``•••• 89``), never in plaintext here.
"""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec


class OrderCodeOut(msgspec.Struct):
    """A code of an order line: masked, with its fate on both sides."""

    id: uuid.UUID
    code_id: uuid.UUID
    masked: str
    state: str
    revealed: bool
    unit_cost_fen: int
    delivered_at: dt.datetime | None
    redeemed_at: dt.datetime | None
    redeemed_via: str


class OrderLineOut(msgspec.Struct):
    """One line of a channel order, with what settlement needs."""

    id: uuid.UUID
    channel_line_id: str
    sku: str
    listing_id: uuid.UUID | None
    product_id: uuid.UUID | None
    quantity: int
    unit_price_fen: int
    gross_fen: int
    cost_fen: int
    split_rule: dict[str, object]
    refunded_quantity: int
    refunded_fen: int
    delivered_at: dt.datetime | None
    codes: list[OrderCodeOut] = msgspec.field(default_factory=list)


class RefundOut(msgspec.Struct):
    id: uuid.UUID
    line_id: uuid.UUID
    refund_id: str
    kind: str
    quantity: int
    amount_fen: int
    returned: int
    voided: int
    reason: str
    created_at: dt.datetime


class ChannelOrderOut(msgspec.Struct):
    """A channel order. ``buyer_phone`` is masked; ``refusal`` says why a ``refused`` order was refused and
    ``last_error`` why a ``failed`` one is waiting for a person."""

    id: uuid.UUID
    account_id: uuid.UUID
    account_name: str
    connector_id: str
    channel_order_id: str
    status: str
    source: str
    placed_at: dt.datetime
    deliver_by: dt.datetime | None
    total_fen: int
    buyer_id: str
    buyer_phone: str
    referrer: str
    kol: str
    attempts: int
    refusal: str
    last_error: str
    fulfilled_at: dt.datetime | None
    created_at: dt.datetime
    lines: list[OrderLineOut] = msgspec.field(default_factory=list)
    refunds: list[RefundOut] = msgspec.field(default_factory=list)


class ChannelOrderPage(msgspec.Struct):
    items: list[ChannelOrderOut]
    next_cursor: uuid.UUID | None = None


class SalesFigures(msgspec.Struct):
    """One channel account's sales in a period: orders fulfilled, units, gross, refunded (fen)."""

    orders: int = 0
    units: int = 0
    gross_fen: int = 0
    refunded_fen: int = 0
    net_fen: int = 0


class ChannelSales(msgspec.Struct):
    account_id: uuid.UUID
    account_name: str
    connector_id: str
    today: SalesFigures
    week: SalesFigures
    month: SalesFigures


class SalesReport(msgspec.Struct):
    """Per-channel sales today, this week (from Monday) and this month, in the tenant's time zone."""

    timezone: str
    today_from: dt.datetime
    week_from: dt.datetime
    month_from: dt.datetime
    channels: list[ChannelSales]
