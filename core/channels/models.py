"""Listings of products on channel accounts, with their price history."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKeyConstraint, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped

__all__ = ["LISTING_STATUSES", "QUOTA_KINDS", "Listing", "ListingPriceChange"]

LISTING_STATUSES = ("active", "paused")
#: ``fixed``: ``quota_value`` units; ``share``: ``quota_value`` basis points (1/10000) of available stock.
QUOTA_KINDS = ("fixed", "share")


class Listing(TenantScoped):
    """A product offered on one channel account under the channel's SKU id.

    ``price_rule`` (JSON, integers only) computes ``price_fen``; ``quota`` is how many units the listing
    may still sell now (resolved from ``quota_kind`` / ``quota_value``; the quotas of a product's listings
    never sum above its available stock). ``split_rule`` is recorded on every order line sold through it.
    ``version`` grows with every change that must reach the channel; ``pushed_version`` is the last one
    the channel confirmed; ``channel_available`` what the channel last reported (drift when it differs).
    """

    __tablename__ = "listings"
    __table_args__ = (
        UniqueConstraint("tenant_id", "account_id", "sku"),
        ForeignKeyConstraint(
            ["tenant_id", "account_id"], ["connector_accounts.tenant_id", "connector_accounts.id"]
        ),
        ForeignKeyConstraint(["tenant_id", "product_id"], ["products.tenant_id", "products.id"]),
        Index("ix_listings_product", "tenant_id", "product_id", "status"),
        # an account's listings in id order (the push walks them); no column a push writes is indexed, so
        # recording a push (pushed_version, channel_available …) is a heap-only update
        Index("ix_listings_sync", "tenant_id", "account_id", "id"),
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in LISTING_STATUSES)})", name="status_known"),
        CheckConstraint(
            f"quota_kind IN ({', '.join(repr(s) for s in QUOTA_KINDS)})", name="quota_kind_known"
        ),
        CheckConstraint("quota >= 0", name="quota_not_negative"),
        CheckConstraint("price_fen >= 0", name="price_not_negative"),
    )
    account_id: Mapped[uuid.UUID]
    product_id: Mapped[uuid.UUID]
    sku: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20), default="active")
    price_rule: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    price_fen: Mapped[int] = mapped_column(default=0)
    quota_kind: Mapped[str] = mapped_column(String(10), default="fixed")
    quota_value: Mapped[int] = mapped_column(default=0)
    quota: Mapped[int] = mapped_column(default=0)
    sold: Mapped[int] = mapped_column(default=0)
    low_watermark_bp: Mapped[int] = mapped_column(default=1000)
    split_rule: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version: Mapped[int] = mapped_column(default=1)
    pushed_version: Mapped[int] = mapped_column(default=0)
    pushed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    push_error: Mapped[str] = mapped_column(String(500), default="")
    push_attempts: Mapped[int] = mapped_column(default=0)
    channel_available: Mapped[int | None] = mapped_column(default=None)
    drift_since: Mapped[dt.datetime | None] = mapped_column(default=None)
    low_since: Mapped[dt.datetime | None] = mapped_column(default=None)
    updated_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ListingPriceChange(TenantScoped):
    """Every change of a listing's price: from what, to what, and why (``manual``, ``rule``, ``expiry``,
    ``pressure``)."""

    __tablename__ = "listing_price_changes"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "listing_id"], ["listings.tenant_id", "listings.id"]),
        Index("ix_listing_price_changes_listing", "tenant_id", "listing_id", "id"),
    )
    listing_id: Mapped[uuid.UUID]
    old_price_fen: Mapped[int | None] = mapped_column(default=None)
    new_price_fen: Mapped[int]
    reason: Mapped[str] = mapped_column(String(20), default="manual")
    detail: Mapped[str] = mapped_column(String(500), default="")
    user_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
