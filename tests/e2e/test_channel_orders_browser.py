"""Channel orders in headless Chromium: orders from a (test-local) channel arrive by callback, are
fulfilled, and the console shows them with their state, masked codes and per-channel sales; a failed
delivery is retried from the order's page."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import SCREENSHOTS, LiveServer, tenant_id_of
from tests.e2e.test_inventory_browser import owner_logs_in
from tests.integration.channel_orders.fake_channel import (
    CONNECTOR_ID,
    FakeChannel,
    FakeChannelPlugin,
    add_listing,
    connect_account,
    event_body,
    run_jobs,
    sign,
)
from tests.integration.channel_orders.test_callbacks import paid
from tests.integration.inventory.stocking import stock_product

pytestmark = pytest.mark.browser




def test_channel_orders_and_sales_in_the_console(page: Any, live_server: LiveServer, operator_account: Any) -> None:
    from playwright.sync_api import expect

    app = live_server.app
    channel = FakeChannel()
    host = app.state.jobs.plugins
    if CONNECTOR_ID not in host.connectors():
        host.register(FakeChannelPlugin(channel), name="test-orders-channel-e2e")
    else:
        channel = host.connector(CONNECTOR_ID)
    live_server.run(app.state.jobs.relay.stop())  # the test runs the channel-order jobs itself
    try:
        slug = owner_logs_in(page, live_server, operator_account, "chan-")
        tenant_id = tenant_id_of(live_server, slug)
        kernel = app.state.kernel

        async def setup() -> Any:
            shop = await connect_account(kernel, tenant_id, name="抖音小店")
            stocked = await stock_product(kernel, tenant_id, 5)
            await add_listing(kernel, shop, stocked.product_id, "DY-1", 5)
            return shop, stocked

        shop, stocked = live_server.run(setup())
        channel.state(shop.account_id).fail_deliveries = 0
        with httpx.Client(base_url=live_server.url, timeout=30) as http:
            for order_id, qty in (("DY-1001", 2), ("DY-1002", 1)):
                body = event_body(paid(order_id, "DY-1", qty))
                r = http.post(f"/channels/{shop.account_id}/callback", content=body,
                              headers={"x-test-signature": sign(shop.secret, body), "content-type": "application/json"})
                assert r.status_code == 200, r.text
        live_server.run(_run(app, tenant_id))
        channel.state(shop.account_id).reject_deliveries = True
        with httpx.Client(base_url=live_server.url, timeout=30) as http:
            body = event_body(paid("DY-1003", "DY-1", 1))
            http.post(f"/channels/{shop.account_id}/callback", content=body,
                      headers={"x-test-signature": sign(shop.secret, body), "content-type": "application/json"})
        live_server.run(_run(app, tenant_id))
        channel.state(shop.account_id).reject_deliveries = False

        page.get_by_role("navigation").get_by_role("link", name="渠道订单").click()
        expect(page.locator("h1")).to_have_text("渠道订单")
        sales = page.locator(f'[data-table="channel-sales"] tr[data-account="{shop.account_id}"]')
        expect(sales).to_contain_text("抖音小店")
        expect(sales.locator("td").nth(1)).to_contain_text("2 单，3 件")
        expect(page.locator('tr[data-order="DY-1001"] [data-status]')).to_have_text("已发货")
        expect(page.locator('tr[data-order="DY-1003"] [data-status]')).to_have_text("失败：需人工处理")

        page.locator('tr[data-order="DY-1001"] a').click()
        codes = page.locator('[data-table="channel-order-codes"] tbody tr')
        expect(codes).to_have_count(2)
        text = page.content()
        assert not any(n in text for n in stocked.numbers)  # masked, never plaintext
        expect(codes.first).to_contain_text("••••")

        page.goto("/console/channel-orders?status=failed")
        page.locator('tr[data-order="DY-1003"] a').click()
        page.locator("[data-retry-form] button").click()
        expect(page.locator("[data-order-status]")).to_have_text("已接收")
        live_server.run(_run(app, tenant_id))
        page.reload()
        expect(page.locator("[data-order-status]")).to_have_text("已发货")
        page.screenshot(path=str(SCREENSHOTS / "channel-orders.png"), full_page=True)
    finally:
        live_server.run(_restart(app))


async def _run(app: Any, tenant_id: uuid.UUID) -> None:
    assert await run_jobs(app, tenant_id) == []


async def _restart(app: Any) -> None:
    app.state.jobs.relay.start()
