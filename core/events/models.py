"""The tenant's event log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped


class Event(TenantScoped):
    """One domain event; ``id`` is a UUIDv7, so ordering by id is ordering by time."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_type", "tenant_id", "type", "id"),)
    type: Mapped[str] = mapped_column(String(60))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    object_id: Mapped[str] = mapped_column(String(80), default="")
