"""Two tenants with statements: A never lists, reads, imports into, fetches for or maps B's accounts and
statements (B's ids answer 404, B's lines never show); the console does the same; on PostgreSQL raw SQL as
the app role in A's context sees none of B's statement rows."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.integration.console.conftest import Browser, text_of
from tests.integration.statements.helpers import FIXTURES, import_file, register_builtin, sandbox_account
from tests.raw_sql import app_role_engine


@pytest.fixture
async def two_tenants(client: Any, kernel: Any, app: Any, make_tenant: Any, make_api_client: Any) -> Any:
    register_builtin(app)
    out = []
    for name in ("A", "B"):
        tenant = await make_tenant(plan="growth")
        creds = await make_api_client(tenant)
        account_id = await sandbox_account(kernel, tenant.id, name=f"Shop {name}")
        r = await import_file(client, creds.headers, account_id, "locallife_gbk.csv")
        assert r.status_code == 201, r.text
        out.append((tenant, creds.headers, account_id, r.json()["id"]))
    return out


async def test_tenant_a_never_sees_or_touches_b_statements(client, two_tenants) -> None:
    (_a, ha, account_a, statement_a), (_b, _hb, account_b, statement_b) = two_tenants
    listed = (await client.get("/api/v1/statements", headers=ha)).json()["items"]
    assert [s["id"] for s in listed] == [statement_a]
    assert (await client.get("/api/v1/statements", params={"account": str(account_b)}, headers=ha)).json()["items"] == []
    r = await client.get(f"/api/v1/statements/{statement_b}", headers=ha)
    assert r.status_code == 404 and r.json()["code"] == "statement_not_found"
    r = await client.get(f"/api/v1/statements/{statement_b}/lines", headers=ha)
    assert r.status_code == 404
    for method, url, kwargs in (
        ("GET", f"/api/v1/statement-mappings/{account_b}", {}),
        ("PUT", f"/api/v1/statement-mappings/{account_b}",
         {"json": {"columns": {"order_id": "订单号", "amount": "金额", "occurred_at": "时间"}}}),
        ("POST", "/api/v1/statements/fetches",
         {"json": {"account_id": str(account_b), "start": "2026-11-01T00:00:00+08:00",
                   "end": "2026-11-02T00:00:00+08:00"}}),
    ):
        r = await client.request(method, url, headers=ha, **kwargs)
        assert r.status_code == 404 and r.json()["code"] == "statement_account_not_found", (method, url, r.text)
    r = await import_file(client, ha, account_b, "utf8_bom.csv")
    assert r.status_code == 404 and r.json()["code"] == "statement_account_not_found"
    r = await client.post("/api/v1/statements/previews", headers=ha, data={"account_id": str(account_b)},
                          files={"file": ("a.csv", "订单号,金额,时间\n1,2,2026-11-01\n".encode())})
    assert r.status_code == 404
    # A importing the same file into its own account stores nothing new; B's copy is untouched
    again = (await import_file(client, ha, account_a, "locallife_gbk.csv")).json()
    assert (again["lines_new"], again["lines_repeated"]) == (0, 4)


async def test_console_statement_pages_are_tenant_walled(app, two_tenants) -> None:
    (a, _ha, account_a, statement_a), (_b, _hb, account_b, statement_b) = two_tenants
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local") as c:
        br = Browser(c)
        assert (await br.console_login(a.slug, a.owner_email, a.owner_password)).status_code in (200, 303)
        assert (await br.get(f"/console/statements/{statement_a}")).status_code == 200
        assert (await br.get(f"/console/statements/{statement_b}")).status_code == 404
        page = (await br.get("/console/statements")).text
        assert statement_a in page and statement_b not in page and str(account_b) not in page
        r = await br.submit("/console/statements", "/console/statements/fetch",
                            {"account_id": str(account_b), "start": "2026-11-01", "end": "2026-11-02"})
        assert r.status_code == 404 and "没有该销售渠道账号" in text_of(r.text)
        r = await br.submit("/console/statements", "/console/statements/upload", {"account_id": str(account_b)},
                            files={"file": ("a.csv", (FIXTURES / "utf8_bom.csv").read_bytes())})
        assert r.status_code == 404 and "没有该销售渠道账号" in text_of(r.text)
        r = await br.submit("/console/statements", "/console/statements/upload", {"account_id": str(account_a)},
                            files={"file": ("a.csv", (FIXTURES / "utf8_bom.csv").read_bytes())})
        assert r.status_code == 200 and "对账单列映射" in r.text


async def test_postgres_rls_hides_b_statements_from_raw_sql(settings, two_tenants) -> None:
    if not settings.is_postgres:
        pytest.skip("row-level security is a PostgreSQL wall")
    (a, _, _, _), (b, _, _, _) = two_tenants
    engine = app_role_engine(settings)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT set_config('app.tenant_id', :t, false)"), {"t": str(a.id)})
            for table in ("statements", "statement_lines", "statement_mappings"):
                n = await conn.scalar(text(f"SELECT count(*) FROM {table} WHERE tenant_id = :b"), {"b": b.id})
                assert n == 0, table
            assert await conn.scalar(text("SELECT count(*) FROM statement_lines")) == 4
    finally:
        await engine.dispose()
