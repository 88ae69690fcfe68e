"""Migration 0020: an upgraded database keeps its audit events (position 0, so the first sealer seals them
all as block 1), loses the per-event links and the chain heads, and can go back down (SQLite, and
PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import uuid
from pathlib import Path

import pytest
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import command
from core.audit.services import verify_chain
from core.db.context import tenant_context
from core.db.migrations import ROOT
from core.db.session import Database
from tests.conftest import _create_pg_database, _drop_pg_database, _pg_admin_url


def _migrate(owner_url: str, app_url: str, revision: str, *, down: bool = False) -> None:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes.update(owner_url=owner_url, app_url=app_url, configure_logging=False)
    (command.downgrade if down else command.upgrade)(cfg, revision)


async def _seed(owner_url: str, tid: uuid.UUID, *, postgres: bool) -> None:
    """A tenant with five events as the old release left them: three linked, two not yet."""
    def key(u: uuid.UUID) -> object:
        return u if postgres else u.hex

    engine = create_async_engine(owner_url)
    now = dt.datetime.now(dt.UTC)
    try:
        async with engine.begin() as conn:
            if postgres:
                await conn.execute(text("SET LOCAL session_replication_role = replica"))  # no plan row needed
            await conn.execute(text(
                "INSERT INTO tenants (id, slug, name, plan_id, status, timezone, currency, owner_email, locale,"
                " created_at) VALUES (:id, :slug, 'Old shop', :plan, 'active', 'Asia/Shanghai', 'CNY',"
                " 'owner@old.example.com', 'zh-CN', :now)"
            ), {"id": key(tid), "slug": f"old-{tid.hex[:8]}", "plan": key(uuid.uuid4()), "now": now})
            prev = "0" * 64
            for i in range(5):
                seq = i + 1 if i < 3 else None
                link = hashlib.sha256(f"{prev}{i}".encode()).hexdigest() if seq else None
                await conn.execute(text(
                    "INSERT INTO audit_events (tenant_id, id, seq, occurred_at, actor_type, actor_id, action,"
                    " object_type, object_id, data, prev_hash, hash, created_at) VALUES (:t, :id, :seq, :at,"
                    " 'system', 'kaquan', :action, 'thing', :obj, :data, :prev, :hash, :at)"
                ), {"t": key(tid), "id": key(uuid.uuid4()), "seq": seq, "at": now + dt.timedelta(seconds=i),
                    "action": f"old.event{i}", "obj": str(i), "data": json.dumps({"i": i}),
                    "prev": prev if seq else None, "hash": link})
                prev = link or prev
            await conn.execute(text(
                "INSERT INTO audit_heads (tenant_id, id, last_seq, last_hash, created_at) VALUES (:t, :id, 3, :h, :at)"
            ), {"t": key(tid), "id": key(uuid.uuid4()), "h": prev, "at": now})
    finally:
        await engine.dispose()


async def _check(owner_url: str, app_url: str, *, postgres: bool) -> None:
    await asyncio.to_thread(_migrate, owner_url, app_url, "0019_settlement")
    tid = uuid.uuid4()
    await _seed(owner_url, tid, postgres=postgres)
    await asyncio.to_thread(_migrate, owner_url, app_url, "heads")
    owner = create_async_engine(owner_url)
    app = Database(app_url)
    try:
        async with owner.connect() as conn:
            positions = (await conn.execute(text("SELECT txid FROM audit_events"))).scalars().all()
            tables = (await conn.execute(text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'" if postgres
                else "SELECT name FROM sqlite_master WHERE type = 'table'"
            ))).scalars().all()
        assert positions == [0] * 5
        assert "audit_seals" in tables and "audit_heads" not in tables
        with tenant_context(tid):
            async with app.transaction() as db:
                report = await verify_chain(db, tid)
        assert report.ok and (report.blocks_checked, report.events_checked, report.events_pending) == (1, 5, 0)
        raw = text(
            "INSERT INTO audit_events (tenant_id, id, occurred_at, actor_type, actor_id, action, object_type,"
            " object_id, data, created_at) VALUES (:t, :id, :at, 's', 's', 'a', 'o', 'o', '{}', :at)"
            + (" RETURNING txid" if postgres else "")
        )
        params = {"t": tid if postgres else tid.hex, "id": uuid.uuid4() if postgres else uuid.uuid4().hex,
                  "at": dt.datetime.now(dt.UTC)}
        if postgres:  # a row written by hand is stamped with its transaction's id
            async with owner.begin() as conn:
                assert (await conn.execute(raw, params)).scalar() > 0
        else:  # the app names every position; there is no default to fall back on
            with pytest.raises(DBAPIError):
                async with owner.begin() as conn:
                    await conn.execute(raw, params)
    finally:
        await owner.dispose()
        await app.dispose()
    await asyncio.to_thread(_migrate, owner_url, app_url, "0019_settlement", down=True)
    await asyncio.to_thread(_migrate, owner_url, app_url, "heads")


async def test_migration_0020_sqlite(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    await _check(url, url, postgres=False)


async def test_migration_0020_postgres():
    admin = _pg_admin_url()
    if not admin:
        pytest.skip("PostgreSQL not configured (KAQUAN_TEST_DATABASE_URL)")
    name, owner_url, app_url = await _create_pg_database(admin)
    try:
        await _check(owner_url, app_url, postgres=True)
    finally:
        await _drop_pg_database(admin, name)
