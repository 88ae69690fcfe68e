"""Channel orders, their lines and codes, refunds, and the inbox of channel messages (callbacks, polls).

Every order line records what settlement needs (the next issue): gross price, quantity, channel account,
listing, the unit cost of each code's batch, and the split rule in force when the order was placed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped

__all__ = [
    "LINE_CODE_STATES",
    "MESSAGE_STATUSES",
    "ORDER_STATUSES",
    "ChannelComplaint",
    "ChannelMessage",
    "ChannelOrder",
    "ChannelOrderCode",
    "ChannelOrderLine",
    "ChannelRefund",
]

#: ``received`` → ``fulfilled`` (codes handed to the channel) | ``failed`` (retries exhausted: a person
#: looks) | ``refused`` (risk, paused listing, no stock; told to the channel); then ``partially_refunded``,
#: ``refunded`` or ``cancelled`` as the channel reports them.
ORDER_STATUSES = ("received", "fulfilled", "failed", "refused", "partially_refunded", "refunded", "cancelled")
#: ``issued``: allocated to the line; ``delivered``: the channel accepted it; ``redeemed``: used (here or on
#: the channel); ``returned``: back in stock after a refund (never revealed); ``voided``: refunded after the
#: buyer saw it.
LINE_CODE_STATES = ("issued", "delivered", "redeemed", "returned", "voided")
MESSAGE_STATUSES = ("pending", "done", "failed")


def _known(column: str, values: tuple[str, ...]) -> CheckConstraint:
    return CheckConstraint(f"{column} IN ({', '.join(repr(s) for s in values)})", name=f"{column}_known")


class ChannelMessage(TenantScoped):
    """One event from a channel (callback or poll), stored once per account and ``message_id``.

    ``payload`` is the :class:`plugins.ChannelEvent` as JSON, encrypted under the tenant's data key (it can
    carry a buyer's phone). The outbox job that processes it sets ``status``.
    """

    __tablename__ = "channel_messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "account_id", "message_id"),
        ForeignKeyConstraint(
            ["tenant_id", "account_id"], ["connector_accounts.tenant_id", "connector_accounts.id"]
        ),
        Index("ix_channel_messages_status", "tenant_id", "status", "id"),
        _known("status", MESSAGE_STATUSES),
    )
    account_id: Mapped[uuid.UUID]
    message_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(30))
    source: Mapped[str] = mapped_column(String(10), default="callback")  # callback | poll
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str] = mapped_column(String(500), default="")
    processed_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ChannelOrder(TenantScoped):
    """An order placed on a channel, stored once per account and channel order id."""

    __tablename__ = "channel_orders"
    __table_args__ = (
        UniqueConstraint("tenant_id", "account_id", "channel_order_id"),
        ForeignKeyConstraint(
            ["tenant_id", "account_id"], ["connector_accounts.tenant_id", "connector_accounts.id"]
        ),
        Index("ix_channel_orders_status", "tenant_id", "status", "id"),
        Index("ix_channel_orders_account", "tenant_id", "account_id", "placed_at"),
        Index("ix_channel_orders_due", "tenant_id", "status", "next_attempt_at"),
        _known("status", ORDER_STATUSES),
    )
    account_id: Mapped[uuid.UUID]
    channel_order_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="received")
    source: Mapped[str] = mapped_column(String(10), default="callback")  # callback | poll | issue
    placed_at: Mapped[dt.datetime]
    deliver_by: Mapped[dt.datetime | None] = mapped_column(default=None)
    total_fen: Mapped[int] = mapped_column(default=0)
    buyer_id: Mapped[str] = mapped_column(String(100), default="")
    buyer_phone_masked: Mapped[str] = mapped_column(String(20), default="")
    buyer_phone_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    buyer_ip: Mapped[str] = mapped_column(String(64), default="")
    referrer: Mapped[str] = mapped_column(String(100), default="")
    kol: Mapped[str] = mapped_column(String(100), default="")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    refusal: Mapped[str] = mapped_column(String(60), default="")
    fulfilled_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    updated_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ChannelOrderLine(TenantScoped):
    """One line of a channel order, with what settlement needs."""

    __tablename__ = "channel_order_lines"
    __table_args__ = (
        UniqueConstraint("tenant_id", "order_id", "channel_line_id"),
        ForeignKeyConstraint(["tenant_id", "order_id"], ["channel_orders.tenant_id", "channel_orders.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "account_id"], ["connector_accounts.tenant_id", "connector_accounts.id"]
        ),
        ForeignKeyConstraint(["tenant_id", "listing_id"], ["listings.tenant_id", "listings.id"]),
        ForeignKeyConstraint(["tenant_id", "product_id"], ["products.tenant_id", "products.id"]),
        Index("ix_channel_order_lines_listing", "tenant_id", "listing_id", "id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("refunded_quantity >= 0 AND refunded_quantity <= quantity", name="refunded_in_range"),
    )
    order_id: Mapped[uuid.UUID]
    account_id: Mapped[uuid.UUID]
    channel_line_id: Mapped[str] = mapped_column(String(100))
    sku: Mapped[str] = mapped_column(String(100))
    listing_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    product_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    quantity: Mapped[int]
    unit_price_fen: Mapped[int]
    gross_fen: Mapped[int]
    cost_fen: Mapped[int] = mapped_column(default=0)
    split_rule: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: The split rule version in force when the order was placed (``split_rule`` is its terms).
    split_rule_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    refunded_quantity: Mapped[int] = mapped_column(default=0)
    refunded_fen: Mapped[int] = mapped_column(default=0)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    delivery_ref: Mapped[str] = mapped_column(String(100), default="")


class ChannelOrderCode(TenantScoped):
    """A code allocated to an order line, with its batch's unit cost and its fate on both sides."""

    __tablename__ = "channel_order_codes"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "line_id"], ["channel_order_lines.tenant_id", "channel_order_lines.id"]
        ),
        ForeignKeyConstraint(["tenant_id", "code_id"], ["codes.tenant_id", "codes.id"]),
        ForeignKeyConstraint(["tenant_id", "batch_id"], ["batches.tenant_id", "batches.id"]),
        Index("ix_channel_order_codes_line", "tenant_id", "line_id"),
        Index("ix_channel_order_codes_code", "tenant_id", "code_id"),
        _known("state", LINE_CODE_STATES),
    )
    line_id: Mapped[uuid.UUID]
    code_id: Mapped[uuid.UUID]
    batch_id: Mapped[uuid.UUID]
    unit_cost_fen: Mapped[int] = mapped_column(default=0)
    state: Mapped[str] = mapped_column(String(20), default="issued")
    revealed: Mapped[bool] = mapped_column(default=False)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    redeemed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    redeemed_via: Mapped[str] = mapped_column(String(10), default="")  # kaquan | channel
    reported_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    state_changed_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ChannelRefund(TenantScoped):
    """A cancellation or refund the channel reported, stored once per account and refund id."""

    __tablename__ = "channel_refunds"
    __table_args__ = (
        UniqueConstraint("tenant_id", "account_id", "refund_id"),
        ForeignKeyConstraint(
            ["tenant_id", "line_id"], ["channel_order_lines.tenant_id", "channel_order_lines.id"]
        ),
        ForeignKeyConstraint(
            ["tenant_id", "account_id"], ["connector_accounts.tenant_id", "connector_accounts.id"]
        ),
        Index("ix_channel_refunds_line", "tenant_id", "line_id"),
    )
    account_id: Mapped[uuid.UUID]
    line_id: Mapped[uuid.UUID]
    refund_id: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20), default="refund")  # refund | cancellation
    quantity: Mapped[int]
    amount_fen: Mapped[int]
    returned: Mapped[int] = mapped_column(default=0)
    voided: Mapped[int] = mapped_column(default=0)
    reason: Mapped[str] = mapped_column(String(500), default="")


class ChannelComplaint(TenantScoped):
    """A buyer's complaint about a channel order, recorded by a person or reported by the channel.

    Counted in the complaint rate of the channel KPIs (flagged at 2% of orders).
    """

    __tablename__ = "channel_complaints"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "order_id"], ["channel_orders.tenant_id", "channel_orders.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "account_id"], ["connector_accounts.tenant_id", "connector_accounts.id"]
        ),
        Index("ix_channel_complaints_account", "tenant_id", "account_id", "occurred_at"),
    )
    account_id: Mapped[uuid.UUID]
    order_id: Mapped[uuid.UUID]
    category: Mapped[str] = mapped_column(String(30), default="other")
    note: Mapped[str] = mapped_column(String(500), default="")
    source: Mapped[str] = mapped_column(String(10), default="manual")  # manual | channel
    occurred_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(String(200), default="")
