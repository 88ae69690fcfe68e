"""Helpers of the audit tests: seal a tenant, read its rows as the owner, tamper with them as the owner, and
keep the in-process sealer off a tenant while a test looks at its pending events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.audit import sealing
from core.audit.services import record, seal_settled
from core.db.context import tenant_context

TABLES = ("audit_events", "audit_seals")


def key(engine: AsyncEngine, value: uuid.UUID) -> Any:
    """A UUID as the owner's raw SQL takes it (SQLite stores UUIDs as hex text)."""
    return value if engine.dialect.name == "postgresql" else value.hex


async def seal(kernel: Any, tenant_id: uuid.UUID) -> int:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return await seal_settled(db, tenant_id, settle=10)


async def write_events(kernel: Any, tenant_id: uuid.UUID, n: int, action: str = "test.event") -> None:
    """``n`` events in one committed transaction."""
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            for i in range(n):
                record(db, action, "thing", i, {"i": i})


async def events_of(engine: AsyncEngine, tenant_id: uuid.UUID) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(
            "select id, txid, action from audit_events where tenant_id = :t order by txid, id"
        ), {"t": key(engine, tenant_id)})).all())


async def seals_of(engine: AsyncEngine, tenant_id: uuid.UUID) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(
            "select block, from_pos, to_pos, event_count, prev_hash, hash from audit_seals "
            "where tenant_id = :t order by block"
        ), {"t": key(engine, tenant_id)})).all())


@asynccontextmanager
async def tampering(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction as the owner with the audit tables' append-only triggers out of the way, as someone
    with the owner's rights would do; the triggers are back when it commits."""
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            for table in TABLES:
                await conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))
            yield conn
            for table in TABLES:
                await conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only"))
            return
        triggers = (await conn.execute(text(
            "select name, sql from sqlite_master where type = 'trigger' and tbl_name in ('audit_events', 'audit_seals')"
        ))).all()
        for name, _sql in triggers:
            await conn.execute(text(f"DROP TRIGGER {name}"))
        yield conn
        for _name, sql in triggers:
            await conn.execute(text(sql))


@asynccontextmanager
async def sealer_held_off(kernel: Any, tenant_id: uuid.UUID) -> AsyncIterator[None]:
    """Hold the tenant's seal lock, so no sealer (the app's own included) seals it meanwhile."""
    if kernel.db.dialect == "sqlite":
        async with sealing._SQLITE_SEAL_LOCK:
            yield
        return
    async with kernel.db.engine.connect() as conn, conn.begin():
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                           {"k": f"kaquan-audit-seal:{tenant_id}"})
        yield
