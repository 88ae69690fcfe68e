"""Audit rows: the events, each stamped with its transaction's position, and the seals of blocks of them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, Integer, String, UniqueConstraint
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from core.db.base import TenantScoped, utcnow


class NextPosition(FunctionElement[int]):
    """The position of an event being inserted: where its transaction stands in commit order.

    PostgreSQL: the writing transaction's id (``pg_current_xact_id()``; the column also has it as its server
    default, for rows written by hand). A transaction below the horizon ``pg_snapshot_xmin`` has ended, so no
    row can later appear below it. SQLite (one writer, commits serialised): the table's next rowid, read in
    the write transaction, so every row of a later commit has a higher position. It is stored (never the
    live rowid), because ``VACUUM`` and a batch migration may renumber rowids.
    """

    type = BigInteger()
    inherit_cache = True
    name = "kaquan_audit_position"


@compiles(NextPosition, "postgresql")
def _position_postgresql(element: NextPosition, compiler: SQLCompiler, **kw: Any) -> str:
    return "pg_current_xact_id()::text::bigint"


@compiles(NextPosition, "sqlite")
def _position_sqlite(element: NextPosition, compiler: SQLCompiler, **kw: Any) -> str:
    return "(SELECT coalesce(max(rowid), 0) + 1 FROM audit_events)"


@compiles(NextPosition)
def _position_other(element: NextPosition, compiler: SQLCompiler, **kw: Any) -> str:
    raise CompileError(f"audit positions are defined for PostgreSQL and SQLite, not {compiler.dialect.name}")


class AuditEvent(TenantScoped):
    """One state change, written in the transaction of the change and never updated. ``txid`` is its
    transaction's position (:class:`NextPosition`); a seal covers every event of a position range."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_position", "tenant_id", "txid"),)
    # the position is computed by the database; nothing reads it back after the insert (no RETURNING)
    __mapper_args__ = {"eager_defaults": False}
    txid: Mapped[int] = mapped_column(BigInteger, default=NextPosition())
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(80))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str] = mapped_column(String(80))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuditSeal(TenantScoped):
    """One block of a tenant's chain: the events with position in ``[from_pos, to_pos)``, in (position, id)
    order. ``hash = sha256(prev_hash || header || events_digest)`` (see :mod:`core.audit.sealing`); block 1
    starts at position 0 and each block starts where the one before it ended. Inserted once, never updated."""

    __tablename__ = "audit_seals"
    __table_args__ = (
        UniqueConstraint("tenant_id", "block"),
        Index("ix_audit_seals_to_pos", "tenant_id", "to_pos"),
        CheckConstraint("block > 0", name="block_positive"),
        CheckConstraint("from_pos < to_pos", name="range_not_empty"),
        CheckConstraint("event_count > 0", name="has_events"),
    )
    block: Mapped[int] = mapped_column(BigInteger)
    from_pos: Mapped[int] = mapped_column(BigInteger)
    to_pos: Mapped[int] = mapped_column(BigInteger)
    event_count: Mapped[int] = mapped_column(Integer)
    events_digest: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
