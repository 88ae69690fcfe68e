"""Products and bundle items."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import JSON, BigInteger, ForeignKeyConstraint, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped

PRODUCT_KINDS = ("code", "reusable_code", "stored_value", "bundle")
CODE_FORMATS = ("number", "number_pin")
VALIDITY_KINDS = ("fixed_date", "days_after_issue", "batch_expiry")
PROVENANCES = ("official", "authorised_reseller", "other")
PRODUCT_STATUSES = ("active", "inactive", "archived")


class Product(TenantScoped):
    """An entitlement: a card-key product, a reusable code, a stored-value card or a bundle."""

    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("tenant_id", "sku"),)
    sku: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    code_format: Mapped[str] = mapped_column(String(20), default="number")
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200), default="")
    brand: Mapped[str] = mapped_column(String(100), default="")
    category: Mapped[str] = mapped_column(String(100), default="")
    face_value: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    validity_kind: Mapped[str] = mapped_column(String(20), default="batch_expiry")
    validity_date: Mapped[dt.datetime | None] = mapped_column(default=None)
    validity_days: Mapped[int | None] = mapped_column(default=None)
    usage_rules: Mapped[str] = mapped_column(Text, default="")
    provenance: Mapped[str] = mapped_column(String(30), default="official")
    status: Mapped[str] = mapped_column(String(20), default="active")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    max_uses: Mapped[int | None] = mapped_column(default=None)
    low_stock_threshold: Mapped[int | None] = mapped_column(default=None)
    low_stock_days_cover: Mapped[int | None] = mapped_column(default=None)
    near_expiry_days: Mapped[int] = mapped_column(default=30)
    # Card number and PIN rules (see core.catalog.rules): canonical length bounds and allowed characters.
    code_min_length: Mapped[int] = mapped_column(default=4, server_default="4")
    code_max_length: Mapped[int] = mapped_column(default=64, server_default="64")
    code_charset: Mapped[str] = mapped_column(String(20), default="printable", server_default="printable")
    pin_min_length: Mapped[int] = mapped_column(default=4, server_default="4")
    pin_max_length: Mapped[int] = mapped_column(default=64, server_default="64")
    pin_charset: Mapped[str] = mapped_column(String(20), default="printable", server_default="printable")


class BundleItem(TenantScoped):
    """One product inside a bundle (组合权益包), with its quantity."""

    __tablename__ = "bundle_items"
    __table_args__ = (
        UniqueConstraint("tenant_id", "bundle_id", "item_id"),
        ForeignKeyConstraint(["tenant_id", "bundle_id"], ["products.tenant_id", "products.id"], ondelete="CASCADE"),
        ForeignKeyConstraint(["tenant_id", "item_id"], ["products.tenant_id", "products.id"]),
    )
    bundle_id: Mapped[uuid.UUID]
    item_id: Mapped[uuid.UUID]
    quantity: Mapped[int] = mapped_column(default=1)
