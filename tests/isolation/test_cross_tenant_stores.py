"""Stores stay in their tenant: A cannot read, change or redeem at B's store (API and console), nor bind
B's store to a clerk; A's list and summary show only A's stores; on PostgreSQL raw SQL as the app role in
A's context sees none of B's stores."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.integration.console.conftest import Browser, browser, make_user  # noqa: F401
from tests.integration.redemption.helpers import code_state, issued_codes
from tests.raw_sql import app_role_engine

SCOPES = ["stores:read", "stores:write", "redemptions:read", "redemptions:write"]


@pytest.fixture
async def two(client: Any, make_tenant: Any, make_api_client: Any) -> list[tuple[Any, Any, dict[str, Any]]]:
    out = []
    for name in ("A", "B"):
        tenant = await make_tenant()
        api = await make_api_client(tenant, SCOPES)
        r = await client.post(
            "/api/v1/stores", json={"code": "S1", "name": f"{name}-店"}, headers=api.headers
        )
        assert r.status_code == 201, r.text
        out.append((tenant, api, r.json()))
    return out


async def test_stores_api_stays_in_the_tenant(client: Any, kernel: Any, two: list[Any]) -> None:
    (a, api_a, _sa), (_b, api_b, sb) = two
    assert [
        s["name"] for s in (await client.get("/api/v1/stores", headers=api_a.headers)).json()["items"]
    ] == ["A-店"]
    assert (await client.get(f"/api/v1/stores/{sb['id']}", headers=api_a.headers)).status_code == 404
    r = await client.patch(f"/api/v1/stores/{sb['id']}", json={"name": "taken"}, headers=api_a.headers)
    assert r.status_code == 404
    assert (
        await client.post(f"/api/v1/stores/{sb['id']}/deactivate", headers=api_a.headers)
    ).status_code == 404
    assert (await client.get(f"/api/v1/stores/{sb['id']}", headers=api_b.headers)).json()["name"] == "B-店"

    iss = await issued_codes(kernel, a.id, 1, with_pin=False)
    r = await client.post("/api/v1/redemptions", json={"code": iss.numbers[0], "store_id": sb["id"]},
                          headers=api_a.headers)  # fmt: skip
    assert r.status_code == 422 and r.json()["code"] == "unknown_store"
    r = await client.post(
        "/api/v1/redemptions", json={"code": iss.numbers[0], "store": "B-店"}, headers=api_a.headers
    )
    assert r.status_code == 422 and await code_state(kernel, a.id, iss.code_ids[0]) == "issued"
    summary = await client.get("/api/v1/redemptions/summary", params={"from": "2026-01-01", "to": "2026-01-31"},
                               headers=api_b.headers)  # fmt: skip
    assert summary.status_code == 200 and summary.json()["by_store"] == []


async def test_console_cannot_touch_or_bind_another_tenants_store(
    two: list[Any],
    browser: Browser,  # noqa: F811
    make_user: Any,  # noqa: F811
) -> None:
    (a, _api_a, _sa), (_b, _api_b, sb) = two
    await browser.console_login(a.slug, a.owner_email, a.owner_password)
    assert (await browser.get(f"/console/stores/{sb['id']}")).status_code == 404
    page = await browser.get("/console/stores")
    assert "A-店" in page.text and "B-店" not in page.text
    r = await browser.submit("/console/stores", f"/console/stores/{sb['id']}/deactivate", {})
    assert r.status_code == 404
    clerk = await make_user(a, "clerk")
    r = await browser.submit("/console/users", f"/console/users/{clerk.id}/stores", {"store_ids": sb["id"]})
    assert r.status_code == 422 and "所选门店中有不存在的门店" in r.text


async def test_raw_sql_as_the_app_role_sees_only_the_tenants_stores(settings: Any, two: list[Any]) -> None:
    if not settings.is_postgres:
        pytest.skip("row-level security is a PostgreSQL wall")
    (a, _api_a, _sa), (b, _api_b, _sb) = two
    engine = app_role_engine(settings)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT set_config('app.tenant_id', :t, false)"), {"t": str(a.id)})
            assert (
                await conn.scalar(text("SELECT count(*) FROM stores WHERE tenant_id = :b"), {"b": b.id}) == 0
            )
            assert (await conn.execute(text("SELECT name FROM stores"))).scalars().all() == ["A-店"]
    finally:
        await engine.dispose()
