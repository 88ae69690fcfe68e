"""Consignment end to end with the built-in ``sandbox`` channel: stock pushed to the simulated shop, a buyer's
order arriving by a signed callback and fulfilled, a refund and a redemption on the channel arriving by
polling, a local-life issue request answered with codes, and a store redemption reported to the shop."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest
from sqlalchemy import select

from core.channel_orders.models import ChannelOrder, ChannelOrderCode
from core.channel_orders.polling import poll_account
from core.connectors.calls import bind_account, seal_secrets
from core.connectors.models import AccountRoute, ConnectorAccount
from core.db.context import tenant_context
from plugins import CallbackReply, StockItem, StockPush, StockPushResult
from plugins.builtin import sandbox_channel as sandbox
from tests.integration.channel_orders.fake_channel import ChannelShop, add_listing, run_jobs
from tests.integration.inventory.stocking import stock_product


@pytest.fixture(scope="module")
def sandbox_host(app: Any) -> Any:
    host = app.state.jobs.plugins
    if "sandbox" not in host.connectors():  # the entry point, when the installed metadata predates it
        host.register(sandbox, name="sandbox_channel")
    return host


async def _sandbox_account(kernel: Any, tenant_id: uuid.UUID) -> ChannelShop:
    secret = "sbx-" + uuid.uuid4().hex
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            account = ConnectorAccount(connector_id="sandbox", kind="sales_channel", name="沙盒店铺",
                                       config={"shop_name": "沙盒店铺", "page_size": 3})
            db.add(account)
            await db.flush()
            account.secrets = seal_secrets(await kernel.keys.cipher(db), account.id, {"signing_secret": secret})
            db.add(AccountRoute(account_id=account.id, tenant_id=tenant_id))
            return ChannelShop(tenant_id, account.id, secret)


async def _post(client: Any, shop: ChannelShop, event: Any) -> Any:
    request = sandbox.signed_callback(shop.secret, event)
    return await client.post(f"/channels/{shop.account_id}/callback", content=request.body, headers=request.headers)


async def test_sandbox_orders_arrive_and_are_fulfilled(client, kernel, app, make_tenant, sandbox_host, quiet_relay):
    tenant = await make_tenant(plan="growth")
    shop = await _sandbox_account(kernel, tenant.id)
    stocked = await stock_product(kernel, tenant.id, 8)
    listing = await add_listing(kernel, shop, stocked.product_id, "SBX-1", 6, price_fen=2990)
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            bound = await bind_account(db, await kernel.keys.cipher(db), sandbox_host, shop.account_id)
    pushed = await bound.call("push_stock", StockPush(reference="p1", items=[
        StockItem(sku="SBX-1", listing_id=str(listing), available=6, price_fen=2990, version=1)]),
        expect=StockPushResult)
    assert pushed.items[0].status == "ok"

    order = sandbox.place_order(shop.account_id, "SBX-1", 2)
    r = await _post(client, shop, sandbox.WORLD.shop(shop.account_id).events[-1])
    assert r.status_code == 200 and msgspec.json.decode(r.content)["ok"] is True
    assert await run_jobs(app, tenant.id) == []
    received = sandbox.WORLD.shop(shop.account_id).received
    assert len(received[(order.order_id, order.lines[0].line_id)]) == 2

    # the shop's life reaches kaquan by polling: a refund of the order, then an issue request answered now
    sandbox.refund(shop.account_id, order.order_id, quantity=1)
    with tenant_context(tenant.id):
        # the paid order is in the log again, but its message id was stored by the callback: only the refund is new
        assert await poll_account(app.state.jobs.env, shop.account_id) == 1
    assert await run_jobs(app, tenant.id) == []

    issue = sandbox.issue_request(shop.account_id, "SBX-1", 1)
    r = await _post(client, shop, issue)
    assert r.status_code == 200
    assert issue.issue is not None
    codes = sandbox.record_issued(shop.account_id, issue.issue.order.order_id,
                                  CallbackReply(status=200, body=r.content))
    assert len(codes) == 1 and codes[0].code in stocked.numbers
    assert sandbox.redeem_on_channel(shop.account_id, codes[0].code) is not None
    with tenant_context(tenant.id):
        await poll_account(app.state.jobs.env, shop.account_id)
    assert await run_jobs(app, tenant.id) == []

    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            orders = {o.channel_order_id: o.status for o in (await db.execute(select(ChannelOrder))).scalars()}
            held = {(c.state, c.redeemed_via) for c in (await db.execute(select(ChannelOrderCode))).scalars()}
    assert orders == {order.order_id: "partially_refunded", issue.issue.order.order_id: "fulfilled"}
    assert ("redeemed", "channel") in held and ("voided", "") in held
