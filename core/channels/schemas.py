"""Listings in and out of the API, the console and the jobs (msgspec Structs; money in integer fen)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import msgspec

from core.validation import Fen

BasisPoints = Annotated[int, msgspec.Meta(ge=0, le=10_000, description="Basis points: 10000 is 100%")]
Factor = Annotated[int, msgspec.Meta(ge=1, le=100_000, description="Basis points: 10000 is ×1, 9000 is ×0.9")]


class ExpiryStep(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Take ``off_bp`` off when the first available code expires within ``days`` days."""

    days: Annotated[int, msgspec.Meta(ge=1, le=3650)]
    off_bp: BasisPoints


class PressureStep(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Take ``off_bp`` off when the product's available stock is at least ``available`` units."""

    available: Annotated[int, msgspec.Meta(ge=1)]
    off_bp: BasisPoints


class PriceRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """How a listing's price is computed.

    ``fixed``: ``price_fen``. ``factor``: ``base_fen`` (the product's face value when omitted) ×
    ``factor_bp`` / 10000. Then the largest matching expiry step and the largest matching pressure step
    each take their share off, and the result is held between ``floor_fen`` and ``ceiling_fen``.
    """

    kind: Literal["fixed", "factor"] = "fixed"
    price_fen: Fen | None = None
    base_fen: Fen | None = None
    factor_bp: Factor = 10_000
    floor_fen: Fen | None = None
    ceiling_fen: Fen | None = None
    expiry_steps: list[ExpiryStep] = msgspec.field(default_factory=list)
    pressure_steps: list[PressureStep] = msgspec.field(default_factory=list)


class QuotaIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``fixed``: ``value`` units; ``share``: ``value`` basis points (1/10000) of the available stock."""

    kind: Literal["fixed", "share"] = "fixed"
    value: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]


class ListingIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    account_id: uuid.UUID
    product_id: uuid.UUID
    sku: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    title: Annotated[str, msgspec.Meta(max_length=200)] = ""
    price_rule: PriceRule
    quota: QuotaIn
    low_watermark_bp: BasisPoints = 1000
    split_rule: dict[str, Any] = msgspec.field(default_factory=dict)


class ListingPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Fields to change; omitted ones stay as they are."""

    title: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    price_rule: PriceRule | None = None
    quota: QuotaIn | None = None
    low_watermark_bp: BasisPoints | None = None
    split_rule: dict[str, Any] | None = None


class ListingOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    account_id: uuid.UUID
    product_id: uuid.UUID
    sku: str
    title: str
    status: str
    price_fen: int
    price_rule: dict[str, Any]
    quota_kind: str
    quota_value: int
    quota: int
    sold: int
    low_watermark_bp: int
    split_rule: dict[str, Any]
    sync: Literal["synced", "pending", "failing"]
    version: int
    pushed_version: int
    pushed_at: dt.datetime | None
    push_error: str
    push_attempts: int
    channel_available: int | None
    drift: bool
    low: bool
    created_at: dt.datetime
    updated_at: dt.datetime | None


class ListingPage(msgspec.Struct):
    items: list[ListingOut]
    next_cursor: uuid.UUID | None


class PriceChangeOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    listing_id: uuid.UUID
    old_price_fen: int | None
    new_price_fen: int
    reason: str
    detail: str
    user_id: uuid.UUID | None
    created_at: dt.datetime


class PriceChangePage(msgspec.Struct):
    items: list[PriceChangeOut]
    next_cursor: uuid.UUID | None


class ProductQuotaOut(msgspec.Struct, kw_only=True):
    """A product's available stock and what its listings hold of it (the sum never exceeds the stock)."""

    product_id: uuid.UUID
    available: int
    held: int
