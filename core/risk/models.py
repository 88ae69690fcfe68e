"""Risk control tables: the tenant's policy and limit rules, blocklists, counters (embedded mode), failed
attempts, lockouts, flags and the log of refusals.

Subject values (IP, device id, phone digest, member or client id) are never used raw as keys: counters,
failures, lockouts and flags key on ``subject_key`` (SHA-256 of dimension and value) and show
``subject_masked``. Blocklist entries keep the value they match on (a phone as its tenant-keyed digest).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped, utcnow
from core.risk.schemas import Action, Dimension, Window

LIMIT_ACTIONS: tuple[str, ...] = ("grant", "claim", "transfer", "redeem")
DIMENSIONS: tuple[str, ...] = ("member", "phone", "ip", "device", "client")
WINDOWS: tuple[str, ...] = ("day", "month")
BLOCK_KINDS: tuple[str, ...] = ("phone", "device", "ip")
FAILURE_DIMENSIONS: tuple[str, ...] = ("client", "ip", "device")
FLAG_KINDS: tuple[str, ...] = ("device_many_members",)


class RiskPolicy(TenantScoped):
    """The tenant's non-limit settings (one row; absent until the rules are first saved)."""

    __tablename__ = "risk_policies"
    __table_args__ = (UniqueConstraint("tenant_id"),)
    failure_limit: Mapped[int] = mapped_column(default=10)
    failure_window_minutes: Mapped[int] = mapped_column(default=10)
    lockout_minutes: Mapped[int] = mapped_column(default=15)
    device_member_limit: Mapped[int] = mapped_column(default=3)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RiskRule(TenantScoped):
    """At most ``max_units`` of ``action`` per ``dimension`` value per tenant-local ``per_window``."""

    __tablename__ = "risk_rules"
    __table_args__ = (UniqueConstraint("tenant_id", "action", "dimension", "per_window"),)
    action: Mapped[Action] = mapped_column(String(20))
    dimension: Mapped[Dimension] = mapped_column(String(20))
    per_window: Mapped[Window] = mapped_column(String(10))
    max_units: Mapped[int]
    active: Mapped[bool] = mapped_column(default=True)


class RiskBlock(TenantScoped):
    """A blocklist entry: a phone (digest), a device id, or an IP address or network (CIDR)."""

    __tablename__ = "risk_blocklist"
    __table_args__ = (
        UniqueConstraint("tenant_id", "kind", "value"),
        Index("ix_risk_blocklist_created", "tenant_id", "created_at"),
    )
    kind: Mapped[str] = mapped_column(String(10))
    value: Mapped[str] = mapped_column(String(128))
    display: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(200), default=None)


class RiskCounter(TenantScoped):
    """Units counted in one window for one rule and subject (embedded mode; Redis in service mode)."""

    __tablename__ = "risk_counters"
    __table_args__ = (
        UniqueConstraint("tenant_id", "key"),
        Index("ix_risk_counters_expires", "tenant_id", "expires_at"),
    )
    key: Mapped[str] = mapped_column(String(120))
    count: Mapped[int] = mapped_column(default=0)
    expires_at: Mapped[dt.datetime]


class RiskFailure(TenantScoped):
    """One failed attempt (wrong code or PIN) by a subject (embedded mode; Redis in service mode)."""

    __tablename__ = "risk_failures"
    __table_args__ = (
        Index("ix_risk_failures_subject", "tenant_id", "dimension", "subject_key", "occurred_at"),
    )
    action: Mapped[str] = mapped_column(String(20))
    dimension: Mapped[str] = mapped_column(String(20))
    subject_key: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[dt.datetime]


class RiskLockout(TenantScoped):
    """A subject locked out of ``action`` until ``locked_until`` after too many failures (or lifted)."""

    __tablename__ = "risk_lockouts"
    __table_args__ = (
        Index("ix_risk_lockouts_subject", "tenant_id", "dimension", "subject_key", "locked_until"),
        Index("ix_risk_lockouts_created", "tenant_id", "created_at"),
    )
    action: Mapped[str] = mapped_column(String(20))
    dimension: Mapped[str] = mapped_column(String(20))
    subject_key: Mapped[str] = mapped_column(String(64))
    subject_masked: Mapped[str] = mapped_column(String(64))
    failures: Mapped[int]
    locked_until: Mapped[dt.datetime]
    lifted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    lifted_by: Mapped[str | None] = mapped_column(String(120), default=None)


class RiskDeviceMember(TenantScoped):
    """A member seen on a device on a tenant-local day (embedded mode; a Redis set in service mode)."""

    __tablename__ = "risk_device_members"
    __table_args__ = (UniqueConstraint("tenant_id", "day", "device_key", "member_id"),)
    day: Mapped[str] = mapped_column(String(10))
    device_key: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[uuid.UUID]


class RiskFlag(TenantScoped):
    """Suspicious activity worth a look (one device used by many members), once per subject and day."""

    __tablename__ = "risk_flags"
    __table_args__ = (
        UniqueConstraint("tenant_id", "kind", "day", "subject_key"),
        Index("ix_risk_flags_created", "tenant_id", "created_at"),
    )
    kind: Mapped[str] = mapped_column(String(40))
    day: Mapped[str] = mapped_column(String(10))
    subject_key: Mapped[str] = mapped_column(String(64))
    subject_masked: Mapped[str] = mapped_column(String(64))
    member_count: Mapped[int]


class RiskRefusal(TenantScoped):
    """A refused action with its stable reason code (written in its own transaction)."""

    __tablename__ = "risk_refusals"
    __table_args__ = (Index("ix_risk_refusals_created", "tenant_id", "occurred_at"),)
    action: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(40))
    dimension: Mapped[str | None] = mapped_column(String(20), default=None)
    subject_masked: Mapped[str | None] = mapped_column(String(64), default=None)
    member_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    client_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    quantity: Mapped[int] = mapped_column(default=1)
    max_units: Mapped[int | None] = mapped_column(default=None)
    occurred_at: Mapped[dt.datetime]
