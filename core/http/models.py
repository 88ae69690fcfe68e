"""Stored responses for ``Idempotency-Key`` (Stripe semantics, kept 24 h)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped


class IdempotencyRecord(TenantScoped):
    """First response to a (principal, key); ``status`` is ``pending`` while the request runs."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "principal", "key"),)
    principal: Mapped[str] = mapped_column(String(120))
    key: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(500))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    response_status: Mapped[int | None] = mapped_column(default=None)
    response_headers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    expires_at: Mapped[dt.datetime]
