"""Split rules (versioned), the append-only split ledger, and the ledger's locked periods.

A rule applies to a ``subject``: ``connector:<connector id>`` (every account of that channel kind),
``account:<account id>`` or ``listing:<listing id>``; the most specific subject with a version in force
when the order was placed wins. Every change is a new version row (``terms`` ``None``: this level no longer
overrides the broader one); nothing is updated in place.

:class:`SplitEntry` rows are written in the same transaction as the event that causes them and never
updated or deleted (on PostgreSQL a trigger refuses it). Balances per party and period are sums of rows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKeyConstraint,
    Index,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped

__all__ = ["ENTRY_EVENTS", "LedgerPeriod", "SplitEntry", "SplitRule"]

#: What caused a ledger row.
ENTRY_EVENTS = ("sale", "redemption", "redemption_rollback", "refund", "cancellation", "adjustment")


class SplitRule(TenantScoped):
    """One version of the split rule of a subject, in force from ``valid_from``."""

    __tablename__ = "split_rules"
    __table_args__ = (
        UniqueConstraint("tenant_id", "subject", "version"),
        Index("ix_split_rules_subject", "tenant_id", "subject", "valid_from"),
        CheckConstraint("version > 0", name="version_positive"),
    )
    subject: Mapped[str] = mapped_column(String(120))
    version: Mapped[int]
    terms: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    valid_from: Mapped[dt.datetime]
    note: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")


class SplitEntry(TenantScoped):
    """One row of the split ledger: ``party`` gets ``amount_fen`` (negative: gives back) from a line's event.

    For every order line the rows of all its events add up to its gross less what was refunded; a refund
    reverses what the rows it refunds created. ``period`` (``YYYY-MM`` in the tenant's zone) is the first
    period of the account not yet locked on or after the event, so a change after a period was confirmed
    lands in the next one. ``event_ref`` names the event (refund id, redemption id, adjustment id).
    """

    __tablename__ = "split_entries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "event", "event_ref", "line_id", "component", "party"),
        ForeignKeyConstraint(
            ["tenant_id", "account_id"], ["connector_accounts.tenant_id", "connector_accounts.id"]
        ),
        ForeignKeyConstraint(
            ["tenant_id", "line_id"], ["channel_order_lines.tenant_id", "channel_order_lines.id"]
        ),
        ForeignKeyConstraint(["tenant_id", "rule_id"], ["split_rules.tenant_id", "split_rules.id"]),
        Index("ix_split_entries_line", "tenant_id", "line_id"),
        Index("ix_split_entries_period", "tenant_id", "account_id", "period", "party"),
        CheckConstraint(
            "event IN ('sale', 'redemption', 'redemption_rollback', 'refund', 'cancellation', 'adjustment')",
            name="event_known",
        ),
        CheckConstraint(
            "party IN ('channel', 'platform', 'referrer', 'kol', 'tenant')", name="party_known"
        ),
    )
    account_id: Mapped[uuid.UUID]
    line_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    order_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    rule_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    event: Mapped[str] = mapped_column(String(20))
    event_ref: Mapped[str] = mapped_column(String(100), default="")
    component: Mapped[str] = mapped_column(String(60), default="")
    party: Mapped[str] = mapped_column(String(10))
    party_ref: Mapped[str] = mapped_column(String(100), default="")
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    period: Mapped[str] = mapped_column(String(7))
    occurred_at: Mapped[dt.datetime]


class LedgerPeriod(TenantScoped):
    """A locked (confirmed) period of an account: new ledger rows of it go to the next open period."""

    __tablename__ = "ledger_periods"
    __table_args__ = (
        UniqueConstraint("tenant_id", "account_id", "period"),
        ForeignKeyConstraint(
            ["tenant_id", "account_id"], ["connector_accounts.tenant_id", "connector_accounts.id"]
        ),
    )
    account_id: Mapped[uuid.UUID]
    period: Mapped[str] = mapped_column(String(7))
    locked_at: Mapped[dt.datetime]
    locked_by: Mapped[str] = mapped_column(String(200), default="")
