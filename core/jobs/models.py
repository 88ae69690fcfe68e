"""Outbox rows, job progress records and the processed-message ledger for idempotent actors."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped, utcnow

#: The relay's partial indexes hold only unfinished rows (a few), never the delivered history (most), and
#: lead with ``tenant_id``: the relay claims tenant by tenant (``core.jobs.relay``), on one node of a
#: database distributed by tenant. The predicates are literal in the relay's queries, so the planner can use
#: them whatever the plan.
OUTBOX_DUE = "status = 'pending'"
OUTBOX_IN_FLIGHT = "status IN ('enqueued', 'running')"


class OutboxMessage(TenantScoped):
    """A message to enqueue, written in the same transaction as the change that causes it."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("tenant_id", "business_key"),
        Index("ix_outbox_due", "tenant_id", "available_at",
              postgresql_where=text(OUTBOX_DUE), sqlite_where=text(OUTBOX_DUE)),
        Index("ix_outbox_in_flight", "tenant_id", "enqueued_at",
              postgresql_where=text(OUTBOX_IN_FLIGHT), sqlite_where=text(OUTBOX_IN_FLIGHT)),
    )
    actor: Mapped[str] = mapped_column(String(120))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    business_key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    available_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class JobRecord(TenantScoped):
    """Progress of a long job (done/total), shown as a bar in the console and the CLI."""

    __tablename__ = "jobs"
    kind: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    done: Mapped[int] = mapped_column(default=0)
    total: Mapped[int] = mapped_column(default=0)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # Last time ``done`` moved (or the job started): a job standing still longer than the worker
    # heartbeat timeout is shown as waiting for a worker.
    progressed_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ProcessedMessage(TenantScoped):
    """A business key an actor has already done; inserted in the same transaction as the work."""

    __tablename__ = "processed_messages"
    __table_args__ = (UniqueConstraint("tenant_id", "business_key"),)
    business_key: Mapped[str] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(120))
