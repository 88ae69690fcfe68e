"""Tenancy on every write path: Core ``insert()`` statements take ``tenant_id`` from the context as ORM
flushes do, fail without one, and cannot name another tenant; ``get_scoped`` keys a row by the context.

Runs on the test backend (SQLite, or PostgreSQL with ``KAQUAN_TEST_DATABASE_URL``); the RLS wall behind the
engine's own check is proven on PostgreSQL.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import Uuid, bindparam, func, insert, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.db.base import TENANT_COLUMN, Base, UTCDateTime, utcnow
from core.db.context import TenantContextMissing, cross_tenant, tenant_context
from core.db.ids import new_id
from core.db.registry import load_all_models
from core.db.session import get_scoped
from core.jobs.models import ProcessedMessage
from core.members.models import Member
from tests.raw_sql import app_role_engine

TABLE = ProcessedMessage.__table__


def _row(key: str, **extra: Any) -> dict[str, Any]:
    return {"id": new_id(), "business_key": key, "actor": "test", "created_at": utcnow(), **extra}


def _upsert(dialect: str) -> Any:
    return pg_insert if dialect == "postgresql" else sqlite_insert


async def _keys(kernel: Any, tenant_id: uuid.UUID, prefix: str) -> set[str]:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            q = select(ProcessedMessage.business_key).where(ProcessedMessage.business_key.like(f"{prefix}%"))
            return set((await db.execute(q)).scalars())


def test_every_tenant_table_takes_its_tenant_from_the_context():
    """A table whose tenant column could be written without the context fails here."""
    load_all_models()
    tables = [t for t in Base.metadata.sorted_tables if "tenant_id" in t.c]
    assert len(tables) >= 10
    tenant = uuid.uuid4()
    for table in tables:
        column = table.c.tenant_id
        assert column.info.get(TENANT_COLUMN), table.name
        assert column.default is not None and column.default.is_callable, table.name
        with pytest.raises(TenantContextMissing):
            column.default.arg(None)
        with tenant_context(tenant):
            assert column.default.arg(None) == tenant, table.name


async def test_core_insert_without_a_tenant_fails(kernel):
    async with kernel.db.transaction() as db:
        with pytest.raises(TenantContextMissing):
            await db.execute(insert(ProcessedMessage).values(**_row("none-1")))
    async with kernel.db.transaction() as db:
        with pytest.raises(TenantContextMissing):
            await db.execute(insert(TABLE), [_row("none-2"), _row("none-3")])
    async with kernel.db.transaction() as db:
        connection = await db.connection()
        with pytest.raises(TenantContextMissing):
            await connection.execute(_upsert(kernel.db.dialect)(TABLE).on_conflict_do_nothing(), [_row("none-4")])


async def test_core_inserts_of_every_shape_stamp_the_tenant_in_context(kernel, make_tenant):
    a, b = await make_tenant(), await make_tenant()
    upsert = _upsert(kernel.db.dialect)
    with tenant_context(a.id):
        async with kernel.db.transaction() as db:
            await db.execute(insert(ProcessedMessage).values(**_row("shape-one")))
            await db.execute(insert(ProcessedMessage), [_row("shape-orm-many-1"), _row("shape-orm-many-2")])
            await db.execute(insert(TABLE), [_row("shape-many-1"), _row("shape-many-2")])
            await db.execute(insert(TABLE).values([_row("shape-values-1"), _row("shape-values-2")]))
            await db.execute(upsert(TABLE).values(**_row("shape-upsert")).on_conflict_do_nothing())
            connection = await db.connection()
            ids = (
                await connection.execute(
                    upsert(TABLE).on_conflict_do_nothing().returning(TABLE.c.id),
                    [_row("shape-upsert-many-1"), _row("shape-upsert-many-2")],
                )
            ).scalars().all()
            assert len(ids) == 2
            source = select(
                literal(new_id(), Uuid()), literal("shape-from-select"), literal("test"), literal(utcnow(), UTCDateTime())
            )
            await db.execute(insert(TABLE).from_select(["id", "business_key", "actor", "created_at"], source))
    assert await _keys(kernel, a.id, "shape-") == {
        "shape-one", "shape-orm-many-1", "shape-orm-many-2", "shape-many-1", "shape-many-2", "shape-values-1",
        "shape-values-2", "shape-upsert", "shape-upsert-many-1", "shape-upsert-many-2", "shape-from-select",
    }
    assert await _keys(kernel, b.id, "shape-") == set()


async def test_core_insert_naming_another_tenant_is_refused(kernel, make_tenant):
    a, b = await make_tenant(), await make_tenant()
    upsert = _upsert(kernel.db.dialect)
    statements: list[tuple[Any, Any]] = [
        (insert(ProcessedMessage).values(**_row("foreign-1", tenant_id=b.id)), None),
        (insert(TABLE), [_row("foreign-2"), _row("foreign-3", tenant_id=b.id)]),
        (insert(TABLE).values([_row("foreign-4"), _row("foreign-5", tenant_id=b.id)]), None),
        (insert(TABLE).values(tenant_id=bindparam("t"), **_row("foreign-6")), {"t": b.id}),
        (insert(TABLE).values(tenant_id=str(b.id), **_row("foreign-7")), None),
        (upsert(TABLE).values(**_row("foreign-8", tenant_id=b.id)).on_conflict_do_nothing(), None),
        (
            insert(TABLE).from_select(
                ["tenant_id", "id", "business_key", "actor", "created_at"],
                select(bindparam("t", type_=Uuid()), literal(new_id(), Uuid()), literal("foreign-9"),
                       literal("test"), literal(utcnow(), UTCDateTime())),
            ),
            {"t": b.id},
        ),
        (  # a tenant taken from an expression the engine cannot check: refused outside a bypass
            insert(TABLE).from_select(
                ["tenant_id", "id", "business_key", "actor", "created_at"],
                select(func.coalesce(bindparam("t", type_=Uuid()), None), literal(new_id(), Uuid()),
                       literal("foreign-10"), literal("test"), literal(utcnow(), UTCDateTime())),
            ),
            {"t": a.id},
        ),
    ]
    with tenant_context(a.id):
        for statement, params in statements:
            async with kernel.db.transaction() as db:
                with pytest.raises(TenantContextMissing, match="names a tenant not in context"):
                    await db.execute(statement, params)
            async with kernel.db.transaction() as db:  # on the bare connection too (no ORM events)
                connection = await db.connection()
                with pytest.raises(TenantContextMissing, match="names a tenant not in context"):
                    await connection.execute(statement, params)
        with pytest.raises(TenantContextMissing):  # the ORM refuses the same (before_flush)
            async with kernel.db.transaction() as db:
                db.add(ProcessedMessage(**_row("foreign-orm", tenant_id=b.id)))
                await db.flush()
        async with kernel.db.transaction() as db:  # naming the tenant in context is allowed
            await db.execute(insert(TABLE).values(**_row("own-named", tenant_id=a.id)))
    async with kernel.db.transaction() as db:  # no tenant and no bypass: naming any tenant is refused
        with pytest.raises(TenantContextMissing):
            await db.execute(insert(TABLE).values(**_row("foreign-none", tenant_id=a.id)))
    with pytest.raises(TenantContextMissing):
        async with kernel.db.transaction() as db:
            db.add(ProcessedMessage(**_row("foreign-orm-none", tenant_id=a.id)))
    assert await _keys(kernel, b.id, "foreign-") == set()
    assert await _keys(kernel, a.id, "foreign-") == set()
    assert await _keys(kernel, a.id, "own-") == {"own-named"}


async def test_cross_tenant_work_names_its_tenants_explicitly(kernel, make_tenant):
    a, b = await make_tenant(), await make_tenant()
    with cross_tenant("test: write for two tenants"):
        async with kernel.db.transaction() as db:
            await db.execute(insert(TABLE), [_row("cross-a", tenant_id=a.id), _row("cross-b", tenant_id=b.id)])
        async with kernel.db.transaction() as db:  # a bypass names tenants; it never guesses one
            with pytest.raises(TenantContextMissing):
                await db.execute(insert(TABLE).values(**_row("cross-none")))
    assert await _keys(kernel, a.id, "cross-") == {"cross-a"}
    assert await _keys(kernel, b.id, "cross-") == {"cross-b"}


async def test_postgres_rls_refuses_a_core_insert_for_another_tenant(test_env, make_tenant):
    """Behind the engine's check: a plain engine as the app role, tenant A set, writing B's row."""
    if test_env.backend != "postgresql":
        pytest.skip("PostgreSQL-only: row-level security (set KAQUAN_TEST_DATABASE_URL)")
    a, b = await make_tenant(), await make_tenant()
    engine = app_role_engine(test_env.settings)
    try:
        async with engine.connect() as conn, conn.begin():
            await conn.execute(select(func.set_config("app.tenant_id", str(a.id), True)))
            with pytest.raises(Exception, match="row-level security"):
                await conn.execute(insert(TABLE).values(**_row("rls-foreign", tenant_id=b.id)))
    finally:
        await engine.dispose()


async def test_get_scoped_keys_rows_by_the_tenant_in_context(kernel, make_tenant):
    a, b = await make_tenant(), await make_tenant()
    with tenant_context(b.id):
        async with kernel.db.transaction() as db:
            theirs = Member(id=new_id(), source="test", status="active", tags=[])
            db.add(theirs)
    with tenant_context(a.id):
        async with kernel.db.transaction() as db:
            mine = Member(id=new_id(), source="test", status="active", tags=[])
            db.add(mine)
        async with kernel.db.transaction() as db:
            found = await get_scoped(db, Member, mine.id)
            assert found is not None and found.tenant_id == a.id
            assert await get_scoped(db, Member, theirs.id) is None
    async with kernel.db.transaction() as db:
        with pytest.raises(TenantContextMissing):
            await get_scoped(db, Member, mine.id)
