"""Engines and sessions, with the tenant filter, insert stamping and per-transaction RLS settings."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.sql.util import find_tables

from core.db.base import TenantScoped
from core.db.context import (
    TenantContextMissing,
    bypass_reason,
    current_tenant,
    require_tenant,
    set_tenant,
)

_SET_CONTEXT = text(
    "select set_config('app.tenant_id', :tid, true), set_config('app.bypass_rls', :bypass, true)"
)


def _context_params() -> dict[str, str]:
    tid = current_tenant()
    return {"tid": str(tid) if tid else "", "bypass": "on" if bypass_reason() else ""}


@event.listens_for(Session, "do_orm_execute")
def _tenant_filter(state: ORMExecuteState) -> None:
    """Add ``tenant_id = <current>`` to every ORM SELECT/UPDATE/DELETE touching a tenant table."""
    if not (state.is_select or state.is_update or state.is_delete):
        return
    if state.is_column_load or state.is_relationship_load:
        return
    if bypass_reason() is not None:
        return
    tid = current_tenant()
    if tid is None:
        # No tenant: refuse any statement that reads or writes a tenant table (never "all tenants").
        if any(
            "tenant_id" in t.c for t in find_tables(state.statement, include_crud=True, include_joins=True)
        ):
            require_tenant()
        return
    state.statement = state.statement.options(
        with_loader_criteria(TenantScoped, lambda cls: cls.tenant_id == tid, include_aliases=True)
    )


@event.listens_for(Session, "before_flush")
def _stamp_tenant(session: Session, flush_context: Any, instances: Any) -> None:
    """Stamp ``tenant_id`` on new tenant rows; refuse rows for another tenant outside a bypass."""
    tid = current_tenant()
    bypass = bypass_reason() is not None
    for obj in session.new:
        if not isinstance(obj, TenantScoped):
            continue
        if obj.tenant_id is None:
            if tid is None:
                raise TenantContextMissing(f"insert of {type(obj).__name__} with no tenant in context")
            obj.tenant_id = tid
        elif tid is not None and obj.tenant_id != tid and not bypass:
            raise TenantContextMissing(f"insert of {type(obj).__name__} for a tenant not in context")


@event.listens_for(Session, "after_begin")
def _set_rls_context(session: Session, transaction: Any, connection: Any) -> None:
    """On PostgreSQL, tell row-level security who we are, for this transaction only."""
    if connection.dialect.name == "postgresql":
        connection.execute(_SET_CONTEXT, _context_params())


async def bind_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Switch the task's tenant and re-apply it to the session's open transaction (RLS)."""
    set_tenant(tenant_id)
    if session.in_transaction() and session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(_SET_CONTEXT, _context_params())


SQLITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(engine: Engine) -> None:
    """WAL, foreign keys, a busy timeout, and write transactions that take the write lock when they begin.

    SQLite has one writer. A transaction begun with a plain (deferred) ``BEGIN`` reads from a snapshot; if it
    then writes after another connection (the in-process sealer or worker) committed, SQLite cannot upgrade
    it and answers "database is locked" at once, whatever the busy timeout. So every write transaction
    begins with ``BEGIN IMMEDIATE``: writers queue for the lock (up to the busy timeout) instead of failing.

    The driver begins a transaction before the first INSERT/UPDATE/DELETE (its ``isolation_level`` says
    which BEGIN); reads before it run outside any transaction, so they never hold the lock or a snapshot
    (a session that only reads blocks no writer, and the audit readers that seal in a transaction of their
    own do not wait on themselves). A SAVEPOINT (``begin_nested``) the driver would let open a deferred
    transaction of its own, hence the ``savepoint`` hook: the transaction begins IMMEDIATE first, and the
    savepoint nests in it (released savepoints then roll back with the transaction, as they should).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = "IMMEDIATE"
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "savepoint")
    def _begin_before_savepoint(conn: Any, _name: str | None) -> None:
        driver = conn.connection.driver_connection  # sqlite3 or aiosqlite: both say in_transaction
        if driver.isolation_level is not None and not driver.in_transaction:  # None: AUTOCOMMIT
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, **kwargs)
        _sqlite_pragmas(engine.sync_engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


class Database:
    """An engine plus its session factory; one per process and URL."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on any error."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
