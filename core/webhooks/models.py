"""Webhook deliveries: one row per event and subscription (subscriptions are in :mod:`core.events.models`)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    ForeignKeyConstraint,
    Index,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped

DELIVERY_STATUSES = ("pending", "succeeded", "failed", "gave_up")


class WebhookDelivery(TenantScoped):
    """One event sent to one subscription, with the outcome of its latest attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "subscription_id"],
            ["webhook_subscriptions.tenant_id", "webhook_subscriptions.id"],
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(["tenant_id", "event_id"], ["events.tenant_id", "events.id"]),
        UniqueConstraint("tenant_id", "subscription_id", "event_id"),
        Index("ix_webhook_deliveries_subscription", "tenant_id", "subscription_id", "id"),
        Index("ix_webhook_deliveries_due", "tenant_id", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_event", "tenant_id", "event_id"),
    )
    subscription_id: Mapped[uuid.UUID] = mapped_column()
    event_id: Mapped[uuid.UUID] = mapped_column()
    event_type: Mapped[str] = mapped_column(String(60))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    attempt_limit: Mapped[int] = mapped_column(default=8)
    last_status_code: Mapped[int | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
    response_snippet: Mapped[str | None] = mapped_column(String(500), default=None)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    locked_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    completed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
