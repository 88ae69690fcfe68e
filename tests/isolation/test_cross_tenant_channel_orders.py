"""Two tenants with channel orders: A never reads, lists, retries or counts B's orders (B's ids answer 404);
the public callback route with B's account id is useless to someone holding only A's secret; on
PostgreSQL raw SQL as the app role in A's context sees none of B's channel-order rows."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.integration.channel_orders.conftest import channel, quiet_relay  # noqa: F401
from tests.integration.channel_orders.fake_channel import (
    add_listing,
    connect_account,
    event_body,
    post_callback,
    run_jobs,
)
from tests.integration.channel_orders.test_callbacks import paid
from tests.integration.inventory.stocking import stock_product
from tests.raw_sql import app_role_engine


@pytest.fixture
async def two_sellers(client, kernel, app, make_tenant, make_api_client, channel, quiet_relay):  # noqa: F811
    out = []
    for name in ("A", "B"):
        tenant = await make_tenant()
        creds = await make_api_client(tenant)
        shop = await connect_account(kernel, tenant.id, name=f"Shop {name}")
        stocked = await stock_product(kernel, tenant.id, 3)
        await add_listing(kernel, shop, stocked.product_id, f"SKU-{name}", 3)
        channel.state(shop.account_id).reject_deliveries = name == "B"  # B's order ends failed (retryable)
        r = await post_callback(client, shop, event_body(paid(f"ORD-{name}", f"SKU-{name}", 1)))
        assert r.status_code == 200
        assert await run_jobs(app, tenant.id) == []
        out.append((tenant, creds, shop))
    return out


async def test_tenant_a_never_sees_or_touches_b_channel_orders(client, kernel, two_sellers):
    (_a, ca, shop_a), (_b, cb, shop_b) = two_sellers
    theirs = (await client.get("/api/v1/channel-orders", headers=cb.headers)).json()["items"]
    assert len(theirs) == 1 and theirs[0]["status"] == "failed"
    b_order = theirs[0]["id"]

    mine = (await client.get("/api/v1/channel-orders", headers=ca.headers)).json()["items"]
    assert [o["channel_order_id"] for o in mine] == ["ORD-A"]
    r = await client.get(f"/api/v1/channel-orders/{b_order}", headers=ca.headers)
    assert r.status_code == 404 and r.json()["code"] == "channel_order_not_found"
    r = await client.post(f"/api/v1/channel-orders/{b_order}/retry", headers=ca.headers)
    assert r.status_code == 404
    r = await client.get("/api/v1/channel-orders", params={"account": str(shop_b.account_id)}, headers=ca.headers)
    assert r.json()["items"] == []
    sales = (await client.get("/api/v1/channel-orders/sales", headers=ca.headers)).json()
    assert [c["account_id"] for c in sales["channels"]] == [str(shop_a.account_id)]

    # the public route: B's account id with A's secret is refused, and nothing lands anywhere
    r = await post_callback(client, shop_a, event_body(paid("ORD-X", "SKU-B", 1)), account=str(shop_b.account_id))
    assert r.status_code == 401
    still = (await client.get("/api/v1/channel-orders", headers=cb.headers)).json()["items"]
    assert [o["channel_order_id"] for o in still] == ["ORD-B"]


async def test_postgres_rls_hides_b_channel_orders_from_raw_sql(kernel, settings, two_sellers):
    if not settings.is_postgres:
        pytest.skip("row-level security is a PostgreSQL wall")
    (a, _, _), (b, _, _) = two_sellers
    engine = app_role_engine(settings)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT set_config('app.tenant_id', :t, false)"), {"t": str(a.id)})
            for table in ("channel_orders", "channel_order_lines", "channel_order_codes", "channel_messages"):
                n = await conn.scalar(text(f"SELECT count(*) FROM {table} WHERE tenant_id = :b"), {"b": b.id})
                assert n == 0, table
            mine = await conn.scalar(text("SELECT count(*) FROM channel_orders"))
            assert mine == 1
    finally:
        await engine.dispose()
