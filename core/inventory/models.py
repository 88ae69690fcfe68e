"""Batches of codes, the codes themselves (encrypted), reservations, imports, alerts and write-offs."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped, utcnow

CODE_STATES = ("available", "reserved", "issued", "redeemed", "expired", "voided")


def _product_fk() -> ForeignKeyConstraint:
    return ForeignKeyConstraint(["tenant_id", "product_id"], ["products.tenant_id", "products.id"])


class Batch(TenantScoped):
    """Codes bought (or generated) together: supplier, unit cost, purchase reference, expiry."""

    __tablename__ = "batches"
    __table_args__ = (UniqueConstraint("tenant_id", "ref"), _product_fk())
    ref: Mapped[str] = mapped_column(String(20))
    product_id: Mapped[uuid.UUID]
    source: Mapped[str] = mapped_column(String(20), default="import")
    supplier: Mapped[str] = mapped_column(String(200), default="")
    unit_cost: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    purchase_ref: Mapped[str] = mapped_column(String(100), default="")
    expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    notes: Mapped[str] = mapped_column(Text, default="")
    code_count: Mapped[int] = mapped_column(default=0)


class Code(TenantScoped):
    """One unit of stock. The number (and PIN) are AES-GCM encrypted; ``digest`` is the HMAC lookup key."""

    __tablename__ = "codes"
    __table_args__ = (
        UniqueConstraint("tenant_id", "digest"),
        _product_fk(),
        ForeignKeyConstraint(["tenant_id", "batch_id"], ["batches.tenant_id", "batches.id"]),
        Index("ix_codes_fefo", "tenant_id", "product_id", "state", "expires_at", "id"),
        Index("ix_codes_batch", "tenant_id", "batch_id", "state"),
    )
    product_id: Mapped[uuid.UUID]
    batch_id: Mapped[uuid.UUID]
    digest: Mapped[str] = mapped_column(String(64))
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    last4: Mapped[str] = mapped_column(String(4))
    has_pin: Mapped[bool] = mapped_column(default=False)
    state: Mapped[str] = mapped_column(String(20), default="available")
    expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    uses_left: Mapped[int | None] = mapped_column(default=None)
    reservation_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    reserved_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    purpose: Mapped[str | None] = mapped_column(String(120), default=None)
    state_changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    void_reason: Mapped[str | None] = mapped_column(String(500), default=None)


class Reservation(TenantScoped):
    """Codes held for a caller for a time; lapsed reservations return their codes to stock."""

    __tablename__ = "reservations"
    __table_args__ = (_product_fk(),)
    product_id: Mapped[uuid.UUID]
    quantity: Mapped[int]
    purpose: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(20), default="held")
    expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class CodeImport(TenantScoped):
    """An upload being imported: staged rows (encrypted), the validation report, then the batch."""

    __tablename__ = "code_imports"
    __table_args__ = (_product_fk(),)
    product_id: Mapped[uuid.UUID]
    filename: Mapped[str] = mapped_column(String(255), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    encoding: Mapped[str] = mapped_column(String(40), default="")
    file_format: Mapped[str] = mapped_column(String(20), default="")
    status: Mapped[str] = mapped_column(String(20), default="validated")
    batch_fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    mapping: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    staged: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    total_rows: Mapped[int] = mapped_column(default=0)
    valid_rows: Mapped[int] = mapped_column(default=0)
    batch_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    job_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class StockAlert(TenantScoped):
    """An open or resolved low-stock / near-expiry alert for a product."""

    __tablename__ = "stock_alerts"
    __table_args__ = (_product_fk(), Index("ix_stock_alerts_open", "tenant_id", "product_id", "kind", "status"))
    product_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="open")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class WriteOff(TenantScoped):
    """Cost written off when codes expire or are voided."""

    __tablename__ = "write_offs"
    __table_args__ = (
        _product_fk(),
        ForeignKeyConstraint(["tenant_id", "batch_id"], ["batches.tenant_id", "batches.id"]),
    )
    product_id: Mapped[uuid.UUID]
    batch_id: Mapped[uuid.UUID]
    reason: Mapped[str] = mapped_column(String(20))
    quantity: Mapped[int]
    cost: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
