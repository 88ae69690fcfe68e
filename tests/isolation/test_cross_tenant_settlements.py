"""Two tenants with settlements: A never lists, reads, confirms, pays or exports B's settlements (B's
account ids answer 404, through the API and the console); on PostgreSQL raw SQL as the app role in A's
context sees none of B's settlement or ledger rows."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.integration.channel_orders.fake_channel import connect_account
from tests.integration.console.conftest import browser  # noqa: F401
from tests.integration.settlements.scenario import seed_month
from tests.raw_sql import app_role_engine


@pytest.fixture
async def two_tenants(client, kernel, make_tenant, make_api_client):
    out = []
    for name in ("A", "B"):
        tenant = await make_tenant(plan="growth")
        creds = await make_api_client(tenant)
        shop = await connect_account(kernel, tenant.id, name=f"Shop {name}")
        month = await seed_month(kernel, tenant.id, shop.account_id, prefix=f"ORD-{name}")
        out.append((tenant, creds, month))
    return out


async def test_tenant_a_never_sees_or_touches_b_settlements(client, two_tenants) -> None:
    (_a, ca, month_a), (_b, cb, month_b) = two_tenants
    mine = (await client.get("/api/v1/settlements", headers=ca.headers)).json()["items"]
    assert [s["account_id"] for s in mine] == [str(month_a.account_id)]
    assert mine[0]["totals"]["gross_fen"] == 15_000  # B's rows are not summed in
    r = await client.get("/api/v1/settlements", params={"account": str(month_b.account_id)}, headers=ca.headers)
    assert r.json()["items"] == []
    balances = (await client.get("/api/v1/settlement-balances", headers=ca.headers)).json()
    assert [(b["account_id"], b["open_fen"]) for b in balances] == [(str(month_a.account_id), 9_100)]
    r = await client.get("/api/v1/settlement-balances", params={"account": str(month_b.account_id)},
                         headers=ca.headers)
    assert r.json() == []

    theirs = f"/api/v1/settlements/{month_b.account_id}/{month_b.period}"
    for method, tail, body in (("GET", "", None), ("GET", "/lines", None), ("GET", "/export.xlsx", None),
                               ("POST", "/confirm", {"force": True, "reason": "x"}),
                               ("POST", "/pay", {"payment_ref": "X"})):
        r = await client.request(method, theirs + tail, json=body, headers=ca.headers)
        assert r.status_code == 404 and r.json()["code"] == "settlement_account_not_found", (tail, r.text)
    still = (await client.get(theirs, headers=cb.headers)).json()
    assert still["status"] == "open" and still["totals"]["net_due_fen"] == 9_100


async def test_scopes_guard_the_settlements_api(client, make_tenant, make_api_client, two_tenants) -> None:
    (a, _, month_a), _ = two_tenants
    reader = await make_api_client(a, ["settlement:read"])
    url = f"/api/v1/settlements/{month_a.account_id}/{month_a.period}"
    assert (await client.get(url, headers=reader.headers)).status_code == 200
    r = await client.post(url + "/confirm", json={"force": True, "reason": "x"}, headers=reader.headers)
    assert r.status_code == 403
    other = await make_api_client(a, ["channel_orders:read"])
    assert (await client.get("/api/v1/settlements", headers=other.headers)).status_code == 403
    assert (await client.get("/api/v1/settlements")).status_code == 401


async def test_console_of_a_never_shows_b_settlements(browser, two_tenants) -> None:  # noqa: F811
    (a, _, month_a), (_b, _, month_b) = two_tenants
    assert (await browser.console_login(a.slug, a.owner_email, a.owner_password)).status_code == 303
    listing = await browser.get("/console/settlements")
    assert str(month_a.account_id) in listing.text and str(month_b.account_id) not in listing.text
    theirs = f"/console/settlements/{month_b.account_id}/{month_b.period}"
    assert (await browser.get(theirs)).status_code == 404
    assert (await browser.get(theirs + "/export.xlsx")).status_code == 404
    r = await browser.submit("/console/settlements", theirs + "/confirm", {"force": "1", "reason": "x"})
    assert r.status_code == 404
    r = await browser.submit("/console/settlements", theirs + "/pay", {"payment_ref": "X"})
    assert r.status_code == 404


async def test_postgres_rls_hides_b_settlement_rows_from_raw_sql(settings, client, two_tenants) -> None:
    if not settings.is_postgres:
        pytest.skip("row-level security is a PostgreSQL wall")
    (a, ca, month_a), (b, _, _) = two_tenants
    r = await client.post(f"/api/v1/settlements/{month_a.account_id}/{month_a.period}/confirm",
                          json={"force": True, "reason": "x"}, headers=ca.headers)
    assert r.status_code == 200
    engine = app_role_engine(settings)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT set_config('app.tenant_id', :t, false)"), {"t": str(b.id)})
            for table in ("settlements", "ledger_periods"):
                assert await conn.scalar(text(f"SELECT count(*) FROM {table} WHERE tenant_id = :a"), {"a": a.id}) == 0
                assert await conn.scalar(text(f"SELECT count(*) FROM {table}")) == 0
            assert await conn.scalar(text("SELECT count(*) FROM split_entries")) == 12
    finally:
        await engine.dispose()
