"""Stored data keys: one active AES-256 key per tenant, wrapped by a master key with its id."""

from __future__ import annotations

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped


class TenantKey(TenantScoped):
    """A tenant's data key, AES-GCM-wrapped by master key ``master_key_id``."""

    __tablename__ = "tenant_keys"
    purpose: Mapped[str] = mapped_column(String(20), default="data")
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(40))
    active: Mapped[bool] = mapped_column(default=True)
