"""Two tenants reconciling: A never reads, lists, resolves or runs B's reconciliation (B's ids answer 404),
in the API and the console; on PostgreSQL raw SQL as the app role in A's context sees none of B's items."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from core.db.context import tenant_context
from tests.integration.console.conftest import Browser, browser  # noqa: F401
from tests.integration.reconciliation.recon_fixtures import at, make_world


@pytest.fixture
async def two(client: Any, kernel: Any, make_tenant: Any, make_api_client: Any) -> list[Any]:
    out = []
    for name in ("A", "B"):
        tenant = await make_tenant()
        creds = await make_api_client(tenant)
        world = await make_world(kernel, tenant.id)
        await world.sale(f"{name}1", {"L1": 5000}, at(3))
        await world.statement([{"line_id": f"s{name}", "order_id": f"{name}1", "order_line_id": "L1",
                                "amount_fen": 4000, "commission_fen": 400}])
        r = await client.post("/api/v1/reconciliation-runs", json={"account_id": str(world.account_id),
                                                                    "period": "2026-03"}, headers=creds.headers)
        assert r.status_code == 201, r.text
        items = (await client.get(f"/api/v1/reconciliation-runs/{r.json()['id']}/items",
                                  headers=creds.headers)).json()["items"]
        out.append((tenant, creds, world, r.json(), items[0]))
    return out


async def test_tenant_a_never_sees_or_touches_b_reconciliation(client: Any, kernel: Any, two: list[Any],
                                                               test_env: Any) -> None:
    (_ta, ca, wa, run_a, _item_a), (_tb, _cb, wb, run_b, item_b) = two
    h = ca.headers
    listed = (await client.get("/api/v1/reconciliation-runs", headers=h)).json()["items"]
    assert [r["id"] for r in listed] == [run_a["id"]]
    assert (await client.get("/api/v1/reconciliation-runs", params={"account": str(wb.account_id)},
                             headers=h)).json()["items"] == []
    r = await client.get(f"/api/v1/reconciliation-runs/{run_b['id']}", headers=h)
    assert r.status_code == 404 and r.json()["code"] == "recon_run_not_found"
    r = await client.get(f"/api/v1/reconciliation-runs/{run_b['id']}/items", headers=h)
    assert r.status_code == 404
    r = await client.get(f"/api/v1/reconciliation-items/{item_b['id']}", headers=h)
    assert r.status_code == 404 and r.json()["code"] == "recon_item_not_found"
    r = await client.post(f"/api/v1/reconciliation-items/{item_b['id']}/resolve",
                          json={"resolution": "accept_ours", "reason": "not mine"}, headers=h)
    assert r.status_code == 404
    r = await client.post("/api/v1/reconciliation-runs", json={"account_id": str(wb.account_id), "period": "2026-03"},
                          headers=h)
    assert r.status_code == 404 and r.json()["code"] == "channel_account_not_found"
    # B's item is untouched, and A's run counts only A's lines
    assert run_a["counts"]["amount_mismatch"] == 1 and run_a["counts"]["missing_ours"] == 0
    if test_env.backend == "postgresql":
        with tenant_context(wa.tenant_id):
            async with kernel.db.transaction() as db:
                seen = (await db.execute(text("SELECT DISTINCT tenant_id FROM recon_items"))).scalars().all()
                assert [str(t) for t in seen] == [str(wa.tenant_id)]


async def test_console_of_a_refuses_b_runs_and_items(browser: Browser, two: list[Any]) -> None:  # noqa: F811
    (ta, _ca, _wa, run_a, _ia), (_tb, _cb, wb, run_b, item_b) = two
    await browser.console_login(ta.slug, ta.owner_email, ta.owner_password)
    assert (await browser.get(f"/console/reconciliation?run={run_a['id']}")).status_code == 200
    assert (await browser.get(f"/console/reconciliation?run={run_b['id']}")).status_code == 404
    r = await browser.submit("/console/reconciliation", f"/console/reconciliation/items/{item_b['id']}/resolve",
                             {"resolution": "accept_ours", "reason": "x", "run": run_b["id"], "class": ""})
    assert r.status_code == 404
    r = await browser.submit("/console/reconciliation", "/console/reconciliation/runs",
                             {"account": str(wb.account_id), "period": "2026-03"})
    assert r.status_code == 404 and "data-problem" in r.text
