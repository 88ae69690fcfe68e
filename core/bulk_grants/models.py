"""A bulk grant (an uploaded recipient file), its rows, and the ledger of row keys ever granted.

The ledger (:class:`BulkGrantKey`) is what makes bulk grants exactly-once: a row is granted only in the same
transaction that inserts its key, and ``(tenant_id, row_key)`` is unique. See :mod:`core.bulk_grants.services`
for what a row key is made of and why.
"""

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

from core.db.base import TenantScoped

BULK_STATUSES = ("validated", "queued", "running", "done", "failed")
#: ``invalid`` rows have problems and are never granted; ``pending`` rows wait for the job.
ROW_STATUSES = ("invalid", "pending", "already_granted", "granted", "failed")


class BulkGrant(TenantScoped):
    """An uploaded recipient file: the validation report, then the job's counts."""

    __tablename__ = "bulk_grants"
    __table_args__ = (Index("ix_bulk_grants_status", "tenant_id", "status", "id"),)
    campaign_ref: Mapped[str] = mapped_column(String(120), default="")
    #: ``sms`` / ``email``, ``none`` for no delivery, or None to deliver by whatever contact a row has.
    channel: Mapped[str | None] = mapped_column(String(20), default=None)
    filename: Mapped[str] = mapped_column(String(255), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    file_format: Mapped[str] = mapped_column(String(20), default="")
    encoding: Mapped[str] = mapped_column(String(40), default="")
    status: Mapped[str] = mapped_column(String(20), default="validated")
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    total_rows: Mapped[int] = mapped_column(default=0)
    valid_rows: Mapped[int] = mapped_column(default=0)
    already_granted: Mapped[int] = mapped_column(default=0)
    granted: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    job_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    user_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    client_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class BulkGrantRow(TenantScoped):
    """One data row of the file. The contact (name, phone, e-mail) is encrypted; ``contact_masked`` is shown."""

    __tablename__ = "bulk_grant_rows"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "bulk_grant_id"], ["bulk_grants.tenant_id", "bulk_grants.id"]),
        ForeignKeyConstraint(["tenant_id", "product_id"], ["products.tenant_id", "products.id"]),
        UniqueConstraint("tenant_id", "bulk_grant_id", "row_number"),
        Index("ix_bulk_grant_rows_status", "tenant_id", "bulk_grant_id", "status"),
    )
    bulk_grant_id: Mapped[uuid.UUID]
    row_number: Mapped[int]
    row_key: Mapped[str | None] = mapped_column(String(64), default=None)
    contact_masked: Mapped[str] = mapped_column(String(254), default="")
    contact_secret: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    sku: Mapped[str] = mapped_column(String(64), default="")
    product_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    quantity: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    problems: Mapped[list[str]] = mapped_column(JSON, default=list)
    error_code: Mapped[str | None] = mapped_column(String(60), default=None)
    grant_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    grant_ref: Mapped[str | None] = mapped_column(String(20), default=None)
    processed_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class BulkGrantKey(TenantScoped):
    """A row key that has been granted (ever, by any bulk grant of the tenant): unique per tenant."""

    __tablename__ = "bulk_grant_keys"
    __table_args__ = (
        UniqueConstraint("tenant_id", "row_key"),
        ForeignKeyConstraint(["tenant_id", "bulk_grant_id"], ["bulk_grants.tenant_id", "bulk_grants.id"]),
        ForeignKeyConstraint(["tenant_id", "grant_id"], ["grants.tenant_id", "grants.id"]),
    )
    row_key: Mapped[str] = mapped_column(String(64))
    bulk_grant_id: Mapped[uuid.UUID]
    row_number: Mapped[int]
    grant_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    grant_ref: Mapped[str | None] = mapped_column(String(20), default=None)
