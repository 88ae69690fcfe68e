"""Statements of the channels, their column mappings, reconciliation runs and items, and settlements.

A statement line is stored once per account and channel line id (a statement fetched or imported twice
doubles nothing). Reconciliation classifies every statement line (and every order line of the period the
channel did not report) into one :data:`RECON_CLASSES` item; a person resolves a mismatch with a reason,
which writes adjustment rows to the split ledger — nothing is deleted.
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

__all__ = [
    "LINE_KINDS",
    "RECON_CLASSES",
    "SETTLEMENT_STATUSES",
    "ReconItem",
    "ReconRun",
    "Settlement",
    "Statement",
    "StatementLine",
    "StatementMapping",
]

LINE_KINDS = ("sale", "refund", "commission", "adjustment")
#: ``matched``; ``amount_mismatch`` (both amounts and the difference); ``missing_theirs`` (ours, not on the
#: statement); ``missing_ours`` (on the statement, not ours); ``duplicate`` (a second statement line for
#: the same order line and kind); ``rate_differs`` (amounts agree, the commission does not follow the rule).
RECON_CLASSES = ("matched", "amount_mismatch", "missing_theirs", "missing_ours", "duplicate", "rate_differs")
RESOLUTIONS = ("accept_theirs", "accept_ours", "adjustment")
SETTLEMENT_STATUSES = ("open", "reconciled", "confirmed", "paid")


def _known(column: str, values: tuple[str, ...]) -> CheckConstraint:
    return CheckConstraint(f"{column} IN ({', '.join(repr(s) for s in values)})", name=f"{column}_known")


def _account_fk() -> ForeignKeyConstraint:
    return ForeignKeyConstraint(["tenant_id", "account_id"], ["connector_accounts.tenant_id", "connector_accounts.id"])


class StatementMapping(TenantScoped):
    """How one account's statement files map to statement lines, saved once and reused.

    ``columns``: field → header (fields: ``line_id``, ``order_id``, ``order_line_id``, ``kind``, ``amount``,
    ``commission``, ``occurred_at``, ``description``); ``kinds``: their kind label → ours (``销售`` →
    ``sale``); ``amount_unit``: ``yuan`` (``12.50``) or ``fen`` (``1250``).
    """

    __tablename__ = "statement_mappings"
    __table_args__ = (UniqueConstraint("tenant_id", "account_id"), _account_fk(), _known("amount_unit", ("yuan", "fen")))
    account_id: Mapped[uuid.UUID]
    columns: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    kinds: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    amount_unit: Mapped[str] = mapped_column(String(4), default="yuan")
    updated_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    updated_by: Mapped[str] = mapped_column(String(200), default="")


class Statement(TenantScoped):
    """One fetch or file import of an account's statement lines, with its report."""

    __tablename__ = "statements"
    __table_args__ = (
        _account_fk(),
        Index("ix_statements_account", "tenant_id", "account_id", "created_at"),
        _known("source", ("fetch", "file")),
        _known("status", ("running", "done", "failed")),
    )
    account_id: Mapped[uuid.UUID]
    source: Mapped[str] = mapped_column(String(5))
    filename: Mapped[str] = mapped_column(String(200), default="")
    digest: Mapped[str] = mapped_column(String(64), default="")
    encoding: Mapped[str] = mapped_column(String(20), default="")
    period_start: Mapped[dt.datetime | None] = mapped_column(default=None)
    period_end: Mapped[dt.datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(10), default="running")
    lines_total: Mapped[int] = mapped_column(default=0)
    lines_new: Mapped[int] = mapped_column(default=0)
    lines_repeated: Mapped[int] = mapped_column(default=0)
    lines_rejected: Mapped[int] = mapped_column(default=0)
    problems: Mapped[list[Any]] = mapped_column(JSON, default=list)
    error: Mapped[str] = mapped_column(String(500), default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class StatementLine(TenantScoped):
    """One line of a channel's statement, stored once per account and ``line_id``.

    ``amount_fen``: for ``sale`` the line's gross, for ``refund`` the amount refunded (positive), for
    ``commission`` / ``adjustment`` the amount charged (positive: the channel takes it); ``commission_fen``:
    the channel's commission on a ``sale`` or ``refund`` line.
    """

    __tablename__ = "statement_lines"
    __table_args__ = (
        UniqueConstraint("tenant_id", "account_id", "line_id"),
        _account_fk(),
        ForeignKeyConstraint(["tenant_id", "statement_id"], ["statements.tenant_id", "statements.id"]),
        Index("ix_statement_lines_order", "tenant_id", "account_id", "order_id", "order_line_id"),
        Index("ix_statement_lines_period", "tenant_id", "account_id", "period"),
        _known("kind", LINE_KINDS),
    )
    account_id: Mapped[uuid.UUID]
    statement_id: Mapped[uuid.UUID]
    line_id: Mapped[str] = mapped_column(String(100))
    order_id: Mapped[str] = mapped_column(String(100), default="")
    order_line_id: Mapped[str] = mapped_column(String(100), default="")
    kind: Mapped[str] = mapped_column(String(12))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    commission_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    occurred_at: Mapped[dt.datetime]
    period: Mapped[str] = mapped_column(String(7))
    description: Mapped[str] = mapped_column(String(500), default="")
    row_number: Mapped[int] = mapped_column(default=0)


class ReconRun(TenantScoped):
    """One reconciliation of an account's period; the latest run of a period is the current one."""

    __tablename__ = "recon_runs"
    __table_args__ = (
        _account_fk(),
        Index("ix_recon_runs_period", "tenant_id", "account_id", "period", "started_at"),
        _known("status", ("running", "done", "failed")),
    )
    account_id: Mapped[uuid.UUID]
    period: Mapped[str] = mapped_column(String(7))
    status: Mapped[str] = mapped_column(String(10), default="running")
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    error: Mapped[str] = mapped_column(String(500), default="")
    started_by: Mapped[str] = mapped_column(String(200), default="")


class ReconItem(TenantScoped):
    """One classified line of a reconciliation run, and how a person resolved it."""

    __tablename__ = "recon_items"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "run_id"], ["recon_runs.tenant_id", "recon_runs.id"]),
        _account_fk(),
        Index("ix_recon_items_run", "tenant_id", "run_id", "klass", "id"),
        Index("ix_recon_items_period", "tenant_id", "account_id", "period", "klass"),
        _known("klass", RECON_CLASSES),
        _known("status", ("ok", "open", "resolved")),
    )
    run_id: Mapped[uuid.UUID]
    account_id: Mapped[uuid.UUID]
    period: Mapped[str] = mapped_column(String(7))
    klass: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(12), default="sale")
    statement_line_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    order_line_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    channel_order_id: Mapped[str] = mapped_column(String(100), default="")
    channel_line_id: Mapped[str] = mapped_column(String(100), default="")
    their_amount_fen: Mapped[int | None] = mapped_column(BigInteger, default=None)
    our_amount_fen: Mapped[int | None] = mapped_column(BigInteger, default=None)
    diff_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    their_commission_fen: Mapped[int | None] = mapped_column(BigInteger, default=None)
    our_commission_fen: Mapped[int | None] = mapped_column(BigInteger, default=None)
    status: Mapped[str] = mapped_column(String(10), default="open")
    resolution: Mapped[str] = mapped_column(String(16), default="")
    reason: Mapped[str] = mapped_column(String(500), default="")
    adjustment_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    resolved_by: Mapped[str] = mapped_column(String(200), default="")
    resolved_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class Settlement(TenantScoped):
    """The settlement of one channel account for one period (``YYYY-MM``, tenant time).

    Totals are derived from the split ledger and statements until the settlement is ``confirmed``; then
    they are frozen here and the period is locked (:func:`core.splits.ledger.lock_period`).
    """

    __tablename__ = "settlements"
    __table_args__ = (
        UniqueConstraint("tenant_id", "account_id", "period"),
        _account_fk(),
        _known("status", SETTLEMENT_STATUSES),
    )
    account_id: Mapped[uuid.UUID]
    period: Mapped[str] = mapped_column(String(7))
    status: Mapped[str] = mapped_column(String(10), default="open")
    gross_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    commission_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    refunds_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    adjustments_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    net_due_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    last_run_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    payment_ref: Mapped[str] = mapped_column(String(100), default="")
    reconciled_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    confirmed_by: Mapped[str] = mapped_column(String(200), default="")
    paid_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    updated_at: Mapped[dt.datetime | None] = mapped_column(default=None)
