"""Two tenants with the same seeded scenario: A's KPIs, breakage and console page count only A's channels;
A cannot read or add complaints on B's orders (API and console answer 404 and nothing is written); on
PostgreSQL raw SQL as the app role in A's context sees none of B's complaints."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.integration.console.conftest import Browser, browser  # noqa: F401
from tests.integration.kpis.scenario import Scenario, seed
from tests.raw_sql import app_role_engine


@pytest.fixture
async def two(kernel: Any, make_tenant: Any, make_api_client: Any) -> list[tuple[Any, Any, Scenario]]:
    out = []
    for name in ("A", "B"):
        tenant = await make_tenant()
        sc = await seed(kernel, tenant.id, names=(f"{name}-东店", f"{name}-西店"))
        out.append((tenant, await make_api_client(tenant), sc))
    return out


async def test_kpis_and_complaints_api_stay_in_the_tenant(client: Any, two: list[tuple[Any, Any, Scenario]]) -> None:
    (_a, ca, sa), (_b, cb, sb) = two
    mine = (await client.get("/api/v1/kpis", params={"days": 30}, headers=ca.headers)).json()
    assert [c["account_id"] for c in mine["channels"]] == [str(sa.shop_a.account_id), str(sa.shop_b.account_id)]
    assert mine["overall"]["orders"] == 3 and mine["overall"]["gross_fen"] == 10000  # B's 3 orders not counted
    assert mine["overall"]["complained_orders"] == 2
    assert mine["overall"]["stock_value_fen"] == 25800  # A's stock only
    breakage = (await client.get("/api/v1/kpis/breakage", headers=ca.headers)).json()
    assert breakage["overall"]["value_fen"] == 10600
    assert {c["account_id"] for c in breakage["channels"]} == {str(sa.shop_a.account_id), str(sa.shop_b.account_id)}

    b_order = sb.orders["A1"]
    r = await client.get(f"/api/v1/channel-orders/{b_order}/complaints", headers=ca.headers)
    assert r.status_code == 404 and r.json()["code"] == "channel_order_not_found"
    r = await client.post(f"/api/v1/channel-orders/{b_order}/complaints", json={"category": "other", "note": "x"},
                          headers=ca.headers)
    assert r.status_code == 404
    theirs = (await client.get(f"/api/v1/channel-orders/{b_order}/complaints", headers=cb.headers)).json()
    assert len(theirs) == 2  # B's own two, nothing added by A
    b_kpis = (await client.get("/api/v1/kpis", headers=cb.headers)).json()
    assert b_kpis["overall"]["complained_orders"] == 2


async def test_console_kpis_and_complaint_form_stay_in_the_tenant(
    two: list[tuple[Any, Any, Scenario]], browser: Browser  # noqa: F811
) -> None:
    (a, _, _sa), (_b, _, sb) = two
    r = await browser.console_login(a.slug, a.owner_email, a.owner_password)
    assert r.status_code in (200, 303)
    page = await browser.get("/console/kpis")
    assert page.status_code == 200
    assert "A-东店" in page.text and "B-东店" not in page.text and "B-西店" not in page.text
    assert str(sb.shop_a.account_id) not in page.text
    b_order = sb.orders["A2"]
    r = await browser.get(f"/console/channel-orders/{b_order}")
    assert r.status_code == 404
    r = await browser.submit("/console/kpis", f"/console/channel-orders/{b_order}/complaints",
                             {"category": "other", "note": "x"})
    assert r.status_code == 404


async def test_postgres_rls_hides_b_complaints_from_raw_sql(settings: Any, two: list[tuple[Any, Any, Scenario]]) -> None:
    if not settings.is_postgres:
        pytest.skip("row-level security is a PostgreSQL wall")
    (a, _, _), (b, _, _) = two
    engine = app_role_engine(settings)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT set_config('app.tenant_id', :t, false)"), {"t": str(a.id)})
            assert await conn.scalar(text("SELECT count(*) FROM channel_complaints WHERE tenant_id = :b"),
                                     {"b": b.id}) == 0
            assert await conn.scalar(text("SELECT count(*) FROM channel_complaints")) == 3  # two on A1, one on B1
    finally:
        await engine.dispose()
