"""The reconciliation API (start, list, read, items by class, resolve) and the console page."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.console.conftest import Browser, browser, text_of  # noqa: F401
from tests.integration.reconciliation.recon_fixtures import World, at, make_world


@pytest.fixture
async def setup(kernel: Any, make_tenant: Any, make_api_client: Any) -> tuple[World, dict[str, str], Any]:
    tenant = await make_tenant()
    creds = await make_api_client(tenant)
    world = await make_world(kernel, tenant.id)
    await world.sale("A1", {"L1": 10000}, at(3))
    await world.sale("A3", {"L1": 8000}, at(3))
    await world.statement([
        {"line_id": "s1", "order_id": "A1", "order_line_id": "L1", "amount_fen": 10000, "commission_fen": 1000},
        {"line_id": "s3", "order_id": "A3", "order_line_id": "L1", "amount_fen": 7900, "commission_fen": 790},
    ])
    return world, creds.headers, tenant


async def test_start_list_read_filter_and_resolve(client: Any, setup: Any) -> None:
    world, headers, _ = setup
    r = await client.post("/api/v1/reconciliation-runs", json={"account_id": str(world.account_id),
                                                                "period": "2026-03"}, headers=headers)
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["counts"]["matched"] == 1 and run["counts"]["amount_mismatch"] == 1 and run["counts"]["open"] == 1
    assert run["account_name"] == "Shop" and run["started_by"].startswith("client:")
    listed = (await client.get("/api/v1/reconciliation-runs", params={"period": "2026-03"}, headers=headers)).json()
    assert [x["id"] for x in listed["items"]] == [run["id"]]
    assert (await client.get(f"/api/v1/reconciliation-runs/{run['id']}", headers=headers)).json()["id"] == run["id"]
    items = (await client.get(f"/api/v1/reconciliation-runs/{run['id']}/items",
                              params={"class": "amount_mismatch"}, headers=headers)).json()
    [item] = items["items"]
    assert (item["their_amount_fen"], item["our_amount_fen"], item["diff_fen"]) == (7900, 8000, -100)
    page = (await client.get(f"/api/v1/reconciliation-runs/{run['id']}/items", params={"limit": 1},
                             headers=headers)).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = (await client.get(f"/api/v1/reconciliation-runs/{run['id']}/items",
                             params={"limit": 1, "cursor": page["next_cursor"]}, headers=headers)).json()
    assert len(rest["items"]) == 1 and rest["items"][0]["id"] != page["items"][0]["id"]

    r = await client.post(f"/api/v1/reconciliation-items/{item['id']}/resolve",
                          json={"resolution": "adjustment", "reason": "credit note 17"}, headers=headers)
    assert r.status_code == 422 and r.json()["code"] == "resolution_invalid"
    r = await client.post(f"/api/v1/reconciliation-items/{item['id']}/resolve",
                          json={"resolution": "accept_ours", "reason": "claimed", "amount_fen": 1.5}, headers=headers)
    assert r.status_code in (400, 422)  # money is integer fen, floats are refused
    r = await client.post(f"/api/v1/reconciliation-items/{item['id']}/resolve",
                          json={"resolution": "accept_ours", "reason": "claimed from the channel"}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "resolved" and r.json()["reason"] == "claimed from the channel"
    r = await client.post(f"/api/v1/reconciliation-items/{item['id']}/resolve",
                          json={"resolution": "accept_ours", "reason": "again"}, headers=headers)
    assert r.status_code == 409 and r.json()["code"] == "recon_item_not_open"
    assert (await client.get(f"/api/v1/reconciliation-items/{item['id']}", headers=headers)).json()["resolution"] == \
        "accept_ours"
    assert (await client.get(f"/api/v1/reconciliation-runs/{run['id']}", headers=headers)).json()["counts"]["open"] == 0


async def test_bad_input_is_refused_clearly(client: Any, setup: Any) -> None:
    world, headers, _ = setup
    r = await client.post("/api/v1/reconciliation-runs", json={"account_id": str(world.account_id),
                                                                "period": "2026-13"}, headers=headers)
    assert r.status_code in (400, 422)
    r = await client.post("/api/v1/reconciliation-runs", json={"account_id": str(world.tenant_id),
                                                                "period": "2026-03"}, headers=headers)
    assert r.status_code == 404 and r.json()["code"] == "channel_account_not_found"
    r = await client.get("/api/v1/reconciliation-runs", params={"period": "March"}, headers=headers)
    assert r.status_code == 422
    r = await client.post("/api/v1/reconciliation-runs", json={"account_id": str(world.account_id),
                                                                "period": "2026-03"}, headers=headers)
    r = await client.get(f"/api/v1/reconciliation-runs/{r.json()['id']}/items", params={"class": "odd"},
                         headers=headers)
    assert r.status_code == 422


async def test_console_runs_filters_and_resolves(browser: Browser, setup: Any) -> None:  # noqa: F811
    world, _, tenant = setup
    r = await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    assert r.status_code in (200, 303), r.text
    page = await browser.get("/console/reconciliation")
    assert page.status_code == 200 and "data-run-form" in page.text
    r = await browser.submit("/console/reconciliation", "/console/reconciliation/runs",
                             {"account": str(world.account_id), "period": "2026-02-31"})
    assert r.status_code == 422 and "data-problem" in r.text
    r = await browser.submit("/console/reconciliation", "/console/reconciliation/runs",
                             {"account": str(world.account_id), "period": "2026-03"}, follow_redirects=True)
    assert r.status_code == 200 and 'data-class="amount_mismatch"' in r.text
    run_id = r.text.split('data-run="')[1].split('"')[0]
    listing = await browser.get(f"/console/reconciliation?run={run_id}&class=matched")
    assert 'data-class="matched"' in listing.text and 'data-class="amount_mismatch"' not in listing.text
    item = r.text.split('data-resolve-form="')[1].split('"')[0]
    url = f"/console/reconciliation?run={run_id}"
    r = await browser.submit(url, f"/console/reconciliation/items/{item}/resolve",
                             {"resolution": "adjustment", "amount": "1.234", "reason": "x", "run": run_id, "class": ""})
    assert r.status_code == 422 and "data-problem" in r.text
    r = await browser.submit(url, f"/console/reconciliation/items/{item}/resolve",
                             {"resolution": "accept_theirs", "amount": "", "reason": "", "run": run_id, "class": ""})
    assert r.status_code == 422 and "data-problem" in r.text
    r = await browser.submit(url, f"/console/reconciliation/items/{item}/resolve",
                             {"resolution": "adjustment", "amount": "-1.00", "reason": "credit note", "run": run_id,
                              "class": ""}, follow_redirects=True)
    assert r.status_code == 200
    assert f'data-item="{item}" data-class="amount_mismatch" data-status="resolved"' in r.text
    assert "credit note" in text_of(r.text) and "-¥1.00" in text_of(r.text)
