"""Engines and sessions, with the tenant filter, insert stamping and per-transaction RLS settings.

The session hooks listen on :class:`KaquanSession` (never on SQLAlchemy's global ``Session``); the engine
refuses an INSERT that names a tenant other than the one in context (:func:`_refuse_foreign_tenant`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

from sqlalchemy import Insert, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.sql.elements import BindParameter, ClauseElement, Label
from sqlalchemy.sql.util import find_tables

from core.db.base import TENANT_COLUMN, TenantScoped
from core.db.context import (
    TenantContextMissing,
    bypass_reason,
    current_tenant,
    require_tenant,
    set_tenant,
)
from core.settings import Settings

_SET_CONTEXT = text(
    "select set_config('app.tenant_id', :tid, true), set_config('app.bypass_rls', :bypass, true)"
)


def _context_params() -> dict[str, str]:
    tid = current_tenant()
    return {"tid": str(tid) if tid else "", "bypass": "on" if bypass_reason() else ""}


class KaquanSession(Session):
    """kaquan's ORM session: the tenant filter, insert stamping, RLS settings and the domain session hooks
    listen on this class, never on SQLAlchemy's :class:`~sqlalchemy.orm.Session`, so a library's or a test's
    own session in the same process is left alone. Async sessions use it as their ``sync_session_class``."""


@event.listens_for(KaquanSession, "do_orm_execute")
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
        # a SELECT, UPDATE or DELETE (checked above) is a ClauseElement; ORMExecuteState types it Executable
        statement = cast(ClauseElement, state.statement)
        if any("tenant_id" in t.c for t in find_tables(statement, include_crud=True, include_joins=True)):
            require_tenant()
        return
    state.statement = state.statement.options(
        with_loader_criteria(TenantScoped, lambda cls: cls.tenant_id == tid, include_aliases=True)
    )


@event.listens_for(KaquanSession, "before_flush")
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
        elif obj.tenant_id != tid and not bypass:  # no tenant in context names none either
            raise TenantContextMissing(f"insert of {type(obj).__name__} for a tenant not in context")


@event.listens_for(KaquanSession, "after_begin")
def _set_rls_context(session: Session, transaction: Any, connection: Any) -> None:
    """On PostgreSQL, tell row-level security who we are, for this transaction only."""
    if connection.dialect.name == "postgresql":
        connection.execute(_SET_CONTEXT, _context_params())


T = TypeVar("T", bound=TenantScoped)


async def get_scoped(session: AsyncSession, model: type[T], id_: uuid.UUID) -> T | None:
    """``session.get`` of a tenant row by its own id: the key ``(tenant_id, id)`` takes the tenant in context."""
    return await session.get(model, (require_tenant(), id_))


# An INSERT's tenant given as an SQL expression (a column of another table, a function): not checkable here.
_UNCHECKABLE = object()


def _column_key(column: object) -> object:
    return column if isinstance(column, str) else getattr(column, "key", None)


def _row_values(element: ClauseElement, rows: Sequence[Mapping[str, Any]]) -> Iterator[object]:
    """The values a bound parameter takes in each parameter row; anything else is uncheckable."""
    if isinstance(element, Label):
        element = element.element
    if not isinstance(element, BindParameter):
        yield _UNCHECKABLE
        return
    for row in rows:
        yield row.get(element.key, element.effective_value)


def _stated_tenants(stmt: Insert, rows: Sequence[Mapping[str, Any]]) -> Iterator[object]:
    """Every ``tenant_id`` an INSERT names itself: in ``values()``, a multi-row ``values([...])``, its
    parameter rows or the SELECT it inserts from. Rows that leave it out take the column default instead.

    SQLAlchemy has no public accessor for a statement's values, hence ``_values``/``_multi_values``/
    ``_select_names``; ``tests/isolation/test_tenant_stamping.py`` covers every form, so a change shows there.
    """
    if stmt._select_names is not None:  # INSERT ... FROM SELECT
        if "tenant_id" in stmt._select_names:
            position = stmt._select_names.index("tenant_id")
            source = stmt.select
            assert source is not None  # set together with _select_names
            yield from _row_values(source.selected_columns[position], rows)
        return
    for multi in stmt._multi_values:
        for values in multi:
            if not isinstance(values, Mapping):  # positional rows give every column in table order
                values = dict(zip(stmt.table.c.keys(), values, strict=False))
            named_values = values
            for column, value in named_values.items():
                if _column_key(column) == "tenant_id":
                    if isinstance(value, ClauseElement):
                        yield from _row_values(value, [{}])
                    else:
                        yield value
    named = None
    for column, value in (stmt._values or {}).items():
        if _column_key(column) == "tenant_id":
            named = value
    if named is not None:
        yield from _row_values(named, rows)
        return
    for row in rows:
        if "tenant_id" in row:
            yield row["tenant_id"]


def _refuse_foreign_tenant(
    conn: Connection,
    clauseelement: Any,
    multiparams: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    execution_options: Any,
) -> None:
    """Refuse a Core or ORM INSERT into a tenant table that names a tenant other than the one in context.

    A statement that leaves ``tenant_id`` out gets the context's tenant from the column default; naming one
    is for cross-tenant work, which says so with :func:`~core.db.context.cross_tenant`. On PostgreSQL the
    row-level security policy's ``WITH CHECK`` refuses the same rows; this is the wall on every backend.
    """
    if not isinstance(clauseelement, Insert) or bypass_reason() is not None:
        return
    column = clauseelement.table.c.get("tenant_id")
    if column is None or not column.info.get(TENANT_COLUMN):
        return
    tid = current_tenant()
    rows = multiparams or [params or {}]
    for stated in _stated_tenants(clauseelement, rows):
        if isinstance(stated, str):
            stated = uuid.UUID(stated)
        if stated != tid or tid is None:
            raise TenantContextMissing(
                f"insert into {clauseelement.table.name} names a tenant not in context"
            )


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


def _postgres_connect_args(url: str, statement_cache_size: int, pgbouncer: bool) -> dict[str, Any]:
    """asyncpg's statement settings: a cache of named prepared statements per connection, or (behind
    PgBouncer in transaction pooling mode) none. Without a cache asyncpg prepares every statement unnamed:
    nothing outlives the transaction that PgBouncer keeps on one server connection, so no name collides with
    another client's there and no statement piles up on it. A cached named statement would be looked for on
    whichever server connection the next transaction gets, and asyncpg's numbered names would collide."""
    if not url.startswith("postgresql+asyncpg"):
        return {}
    size = 0 if pgbouncer else statement_cache_size
    # asyncpg's cache (its own queries), and SQLAlchemy's of the statements it prepares (named iff cached)
    return {"statement_cache_size": size, "prepared_statement_cache_size": size}


def _replace_closed_on_checkout(engine: Engine) -> None:
    """Hand out no connection the server already closed (restart, failover, ``pg_terminate_backend``): the
    driver saw the socket close while the connection sat in the pool, so this costs no round trip (unlike
    ``pool_pre_ping``'s ``SELECT 1`` on every checkout). Raising ``DisconnectionError`` makes the pool drop
    every connection made before now and hand out a fresh one. A connection that dies unseen (a network cut)
    fails its request with 503 (``core.http.problems``); SQLAlchemy then invalidates the pool the same way,
    so the next request reconnects."""

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if _seen_closed(dbapi_conn):
            raise DisconnectionError("the server closed this pooled connection")


def _seen_closed(dbapi_conn: Any) -> bool:
    """Whether the driver already knows the connection is closed (asyncpg's ``is_closed``, no round trip)."""
    is_closed = getattr(getattr(dbapi_conn, "driver_connection", None), "is_closed", None)
    return bool(is_closed is not None and is_closed())


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 20,
    statement_cache_size: int = 100,
    pgbouncer: bool = False,
    **kwargs: Any,
) -> AsyncEngine:
    """kaquan's engine: SQLite pragmas (embedded mode) or a sized pool with the statement settings (and no
    pre-ping: a dead connection is replaced on checkout or fails its request with a 503), and inserts
    checked for their tenant."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, **kwargs)
        _sqlite_pragmas(engine.sync_engine)
    else:
        connect_args = {**_postgres_connect_args(url, statement_cache_size, pgbouncer), **kwargs.pop("connect_args", {})}
        engine = create_async_engine(
            url, pool_size=pool_size, max_overflow=max_overflow, connect_args=connect_args, **kwargs
        )
        _replace_closed_on_checkout(engine.sync_engine)
    event.listen(engine.sync_engine, "before_execute", _refuse_foreign_tenant)
    return engine


def engine_options(settings: Settings) -> dict[str, Any]:
    """The engine settings of ``settings`` (``KAQUAN_DB_*``), as :func:`make_engine` keywords."""
    return {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "statement_cache_size": settings.db_statement_cache_size,
        "pgbouncer": settings.db_pgbouncer,
    }


class Database:
    """An engine plus its session factory; one per process and URL."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessionmaker = async_sessionmaker(
            self.engine, expire_on_commit=False, autoflush=True, sync_session_class=KaquanSession
        )

    @classmethod
    def from_settings(cls, settings: Settings, url: str | None = None, **overrides: Any) -> Database:
        """The database of ``settings`` (or ``url`` with its engine settings); ``overrides`` size a smaller pool."""
        return cls(url or settings.db_url, **{**engine_options(settings), **overrides})

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
