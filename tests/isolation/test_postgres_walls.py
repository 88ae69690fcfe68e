"""On PostgreSQL: RLS enabled+forced with a policy on every tenant table; the app role is not privileged;
raw SQL as the app role sees nothing without a tenant, and only its own tenant with one."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from core.db.rls import POLICY_NAME
from tests.raw_sql import app_role_engine


@pytest.fixture
def pg(test_env):
    if test_env.backend != "postgresql":
        pytest.skip("PostgreSQL-only: set KAQUAN_TEST_DATABASE_URL (CI does, and fails without it)")
    return test_env


async def test_every_tenant_table_has_forced_rls_and_a_policy(pg, owner_engine):
    async with owner_engine.connect() as conn:
        rows = (await conn.execute(text("""
            select c.relname, c.relrowsecurity, c.relforcerowsecurity,
                   exists(select 1 from pg_policy p where p.polrelid = c.oid and p.polname = :policy)
            from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where n.nspname = 'public' and c.relkind = 'r'
              and exists(select 1 from information_schema.columns col
                         where col.table_schema = 'public' and col.table_name = c.relname
                           and col.column_name = 'tenant_id')
        """), {"policy": POLICY_NAME})).all()
    assert len(rows) >= 10
    bad = [r[0] for r in rows if not (r[1] and r[2] and r[3])]
    assert bad == []


async def test_app_role_is_neither_owner_superuser_nor_bypassrls(pg, owner_engine):
    app_user = pg.settings.db_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[0]
    async with owner_engine.connect() as conn:
        role = (await conn.execute(text(
            "select rolsuper, rolbypassrls, rolcreaterole, rolcreatedb from pg_roles where rolname = :r"
        ), {"r": app_user})).one()
        owned = (await conn.execute(text(
            "select count(*) from pg_tables where schemaname = 'public' and tableowner = :r"
        ), {"r": app_user})).scalar()
    assert tuple(role) == (False, False, False, False)
    assert owned == 0


async def test_raw_sql_as_app_role_sees_only_the_tenant_in_context(pg, make_tenant):
    a = await make_tenant()
    b = await make_tenant()
    engine = app_role_engine(pg.settings)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("select count(*) from users"))).scalar() == 0
            assert (await conn.execute(text("select count(*) from audit_events"))).scalar() == 0
        async with engine.begin() as conn:
            await conn.execute(text("select set_config('app.tenant_id', :t, true)"), {"t": str(a.id)})
            tenants = (await conn.execute(text("select distinct tenant_id from users"))).scalars().all()
            assert tenants == [a.id]
            # writing a row for another tenant is refused by the policy's WITH CHECK
            with pytest.raises(Exception, match="row-level security"):
                await conn.execute(text(
                    "insert into users (tenant_id, id, email, name, role, status, failed_logins, created_at) "
                    "values (:t, gen_random_uuid(), 'x@y.cn', '', 'viewer', 'invited', 0, now())"
                ), {"t": str(b.id)})
    finally:
        await engine.dispose()
