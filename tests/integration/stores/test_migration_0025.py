"""Migration 0025: every distinct store text of past redemptions becomes a store record (codes S001, S002 …
in order of first use; texts differing only in whitespace are one store), those redemptions are linked to
it, the text stays; and the migration goes back down (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import _create_pg_database, _drop_pg_database, _pg_admin_url
from tests.integration.audit.test_migration_0020 import _migrate


async def _seed(owner_url: str, tid: uuid.UUID, *, postgres: bool) -> None:
    def key(u: uuid.UUID) -> object:
        return u if postgres else u.hex

    engine = create_async_engine(owner_url)
    now = dt.datetime.now(dt.UTC)
    try:
        async with engine.begin() as conn:
            if postgres:
                await conn.execute(text("SET LOCAL session_replication_role = replica"))  # no plan, code rows
            await conn.execute(text(
                "INSERT INTO tenants (id, slug, name, plan_id, status, timezone, currency, owner_email, locale,"
                " created_at) VALUES (:id, :slug, 'Old shop', :plan, 'active', 'Asia/Shanghai', 'CNY',"
                " 'owner@old.example.com', 'zh-CN', :now)"
            ), {"id": key(tid), "slug": f"old-{tid.hex[:8]}", "plan": key(uuid.uuid4()), "now": now})
            for i, store in enumerate(("静安店", "Mall  1", "静安店", "", "Mall 1")):
                await conn.execute(text(
                    "INSERT INTO redemptions (tenant_id, id, code_id, product_id, kind, code_last4, store, terminal,"
                    " currency, status, created_at) VALUES (:t, :id, :c, :p, 'code', '1234', :s, '', 'CNY',"
                    " 'redeemed', :at)"
                ), {"t": key(tid), "id": key(uuid.uuid4()), "c": key(uuid.uuid4()), "p": key(uuid.uuid4()),
                    "s": store, "at": now + dt.timedelta(seconds=i)})  # fmt: skip
    finally:
        await engine.dispose()


async def _check(owner_url: str, app_url: str, *, postgres: bool) -> None:
    await asyncio.to_thread(_migrate, owner_url, app_url, "0021_outbox_tenant_index")
    await _seed(owner_url, uuid.uuid4(), postgres=postgres)
    await asyncio.to_thread(_migrate, owner_url, app_url, "0025_stores")
    engine = create_async_engine(owner_url)
    try:
        async with engine.begin() as conn:
            if postgres:
                await conn.execute(text("SELECT set_config('app.bypass_rls', 'on', true)"))
            stores = (await conn.execute(text("SELECT code, name, active FROM stores ORDER BY code"))).all()
            linked = (await conn.execute(text(
                "SELECT r.store, s.code FROM redemptions r LEFT JOIN stores s"
                " ON s.tenant_id = r.tenant_id AND s.id = r.store_id ORDER BY r.created_at"
            ))).all()  # fmt: skip
        assert [(c, n, bool(a)) for c, n, a in stores] == [("S001", "静安店", True), ("S002", "Mall 1", True)]
        assert [tuple(r) for r in linked] == [
            ("静安店", "S001"), ("Mall  1", "S002"), ("静安店", "S001"), ("", None), ("Mall 1", "S002")
        ]
    finally:
        await engine.dispose()
    await asyncio.to_thread(_migrate, owner_url, app_url, "0021_outbox_tenant_index", down=True)
    await asyncio.to_thread(_migrate, owner_url, app_url, "heads")


async def test_migration_0025_sqlite(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'stores.db'}"
    await _check(url, url, postgres=False)


async def test_migration_0025_postgres():
    admin = _pg_admin_url()
    if not admin:
        pytest.skip("PostgreSQL not configured (KAQUAN_TEST_DATABASE_URL)")
    name, owner_url, app_url = await _create_pg_database(admin)
    try:
        await _check(owner_url, app_url, postgres=True)
    finally:
        await _drop_pg_database(admin, name)
