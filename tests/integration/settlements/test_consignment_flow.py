"""The whole consignment money flow through the API, as a tenant lives it: a split rule for the channel
kind, orders and a refund on the sandbox shop, the shop's statement fetched through its connector,
reconciliation (every line matched), the settlement ready with figures that add up, and the KPIs agreeing
with both."""

from __future__ import annotations

import datetime as dt
from typing import Any

from core.channel_orders.polling import poll_account
from core.connectors.calls import bind_account
from core.db.context import tenant_context
from core.splits.ledger import period_of
from plugins import StockItem, StockPush, StockPushResult
from plugins.builtin import sandbox_channel as sandbox
from tests.integration.channel_orders.conftest import quiet_relay
from tests.integration.channel_orders.fake_channel import run_jobs
from tests.integration.channel_orders.test_sandbox import _sandbox_account, sandbox_host
from tests.integration.inventory.stocking import stock_product
from tests.integration.splits.test_posting import _plain_listing

__all__ = ["quiet_relay", "sandbox_host"]

PRICE = 2990


async def _order(client: Any, app: Any, shop: Any, quantity: int) -> Any:
    order = sandbox.place_order(shop.account_id, "FLOW-1", quantity)
    request = sandbox.signed_callback(shop.secret, sandbox.WORLD.shop(shop.account_id).events[-1])
    r = await client.post(f"/channels/{shop.account_id}/callback", content=request.body, headers=request.headers)
    assert r.status_code == 200, r.text
    assert await run_jobs(app, shop.tenant_id) == []
    return order


async def test_orders_statement_reconciliation_settlement_and_kpis_agree(
    client: Any, kernel: Any, app: Any, make_tenant: Any, make_api_client: Any, sandbox_host: Any, quiet_relay: Any
) -> None:
    tenant = await make_tenant(plan="growth")
    headers = (await make_api_client(tenant)).headers
    shop = await _sandbox_account(kernel, tenant.id)
    stocked = await stock_product(kernel, tenant.id, 10)
    listing = await _plain_listing(kernel, shop, stocked.product_id, "FLOW-1", 8, price_fen=PRICE)
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            bound = await bind_account(db, await kernel.keys.cipher(db), sandbox_host, shop.account_id)
    pushed = await bound.call("push_stock", StockPush(reference="flow", items=[
        StockItem(sku="FLOW-1", listing_id=str(listing), available=8, price_fen=PRICE, version=1)]),
        expect=StockPushResult)
    assert pushed.items[0].status == "ok"

    # the channel kind's rule: 10% of the sale to the channel (what the sandbox shop charges), 2% platform fee
    r = await client.post("/api/v1/split-rules", headers=headers, json={
        "subject": "connector:sandbox", "valid_from": (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat(),
        "terms": {"components": [{"party": "channel", "basis": "sale", "bp": 1000},
                                 {"party": "platform", "basis": "sale", "bp": 200}]},
    })
    assert r.status_code == 201, r.text

    await _order(client, app, shop, 2)
    second = await _order(client, app, shop, 1)
    third = await _order(client, app, shop, 3)
    sandbox.refund(shop.account_id, third.order_id, quantity=1)
    with tenant_context(tenant.id):
        assert await poll_account(app.state.jobs.env, shop.account_id) == 1
    assert await run_jobs(app, tenant.id) == []
    assert second.order_id  # three orders, six units sold, one refunded

    now = dt.datetime.now(dt.UTC)
    r = await client.post("/api/v1/statements/fetches", headers=headers, json={
        "account_id": str(shop.account_id), "start": (now - dt.timedelta(days=1)).isoformat(),
        "end": (now + dt.timedelta(minutes=5)).isoformat(),
    })
    assert r.status_code == 201, r.text
    assert r.json()["lines_new"] == 4  # three sales and the refund

    period = period_of(now, "Asia/Shanghai")
    r = await client.post("/api/v1/reconciliation-runs", headers=headers,
                          json={"account_id": str(shop.account_id), "period": period})
    assert r.status_code == 201, r.text
    counts = r.json()["counts"]
    assert counts.get("matched") == 4, counts
    assert not any(counts.get(k) for k in ("amount_mismatch", "missing_theirs", "missing_ours", "duplicate",
                                           "rate_differs")), counts

    r = await client.get(f"/api/v1/settlements/{shop.account_id}/{period}", headers=headers)
    assert r.status_code == 200, r.text
    settlement = r.json()
    totals = settlement["totals"]
    gross, refunded = 6 * PRICE, PRICE
    assert settlement["status"] == "reconciled"
    assert totals["gross_fen"] == gross and totals["refunds_fen"] == refunded
    # 10% + 2% of each line's gross, rounded down per line; a refund gives back its share of both
    commission = sum(q * PRICE * 1000 // 10_000 + q * PRICE * 200 // 10_000 for q in (2, 1, 3))
    given_back = (3 * PRICE * 1000 // 10_000) // 3 + (3 * PRICE * 200 // 10_000) // 3
    assert totals["commission_fen"] == commission - given_back
    assert totals["net_due_fen"] == gross - refunded - (commission - given_back) + totals["adjustments_fen"]
    assert sum(settlement["parties"].values()) == gross - refunded

    r = await client.get("/api/v1/events", headers=headers, params={"type": "settlement.ready"})
    assert r.status_code == 200 and len(r.json()["items"]) == 1

    r = await client.get("/api/v1/kpis", headers=headers, params={"days": 7})
    assert r.status_code == 200, r.text
    overall = r.json()["overall"]
    assert overall["orders"] == 3 and overall["gross_fen"] == gross and overall["refunded_fen"] == refunded
    assert overall["split_cost_fen"] == commission - given_back
    assert overall["tenant_net_fen"] == totals["net_due_fen"]
    assert overall["split_cost"]["flagged"] is False  # 12% is under the 15% line
