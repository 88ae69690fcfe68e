"""The tenant's event log, and the webhook subscriptions to it.

A subscription lives with the events it subscribes to: :func:`core.events.services.emit` writes a fan-out
row only when the tenant has an active one. :mod:`core.webhooks` manages subscriptions and delivers.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped


class Event(TenantScoped):
    """One domain event; ``id`` is a UUIDv7, so ordering by id is ordering by time."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_type", "tenant_id", "type", "id"),)
    type: Mapped[str] = mapped_column(String(60))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    object_id: Mapped[str] = mapped_column(String(80), default="")


class WebhookSubscription(TenantScoped):
    """Where the tenant wants events POSTed; ``secret`` is the signing secret, encrypted (tenant cipher)."""

    __tablename__ = "webhook_subscriptions"
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(default=True)
    description: Mapped[str] = mapped_column(String(500), default="")
    updated_at: Mapped[dt.datetime | None] = mapped_column(default=None)
