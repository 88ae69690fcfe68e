"""The public callback route and order fulfilment: stored once, fulfilled from the listing's quota, codes
handed to the channel once; bad input refused with nothing stored."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select

from core.channel_orders.models import ChannelMessage, ChannelOrder, ChannelOrderCode, ChannelOrderLine
from core.db.context import tenant_context
from core.events.models import Event
from core.inventory.models import Code
from core.jobs.models import OutboxMessage
from plugins import Buyer, ChannelEvent, OrderLine
from plugins import ChannelOrder as OrderIn
from tests.integration.channel_orders.fake_channel import (
    add_listing,
    event_body,
    listing_quota,
    post_callback,
    reply_json,
    run_jobs,
)


def paid(order_id: str, sku: str, quantity: int = 1, *, message_id: str | None = None, price: int = 1990,
         buyer: Buyer | None = None) -> ChannelEvent:
    now = dt.datetime.now(dt.UTC)
    return ChannelEvent(
        message_id=message_id or f"msg-{order_id}", type="order.paid", occurred_at=now,
        order=OrderIn(order_id=order_id, placed_at=now, buyer=buyer or Buyer(id="buyer-1", phone="13812345678"),
                      lines=[OrderLine(line_id=f"{order_id}-1", sku=sku, quantity=quantity, unit_price_fen=price)]),
    )


async def count(kernel, tenant_id, model, *where) -> int:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return int(await db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def the_order(kernel, tenant_id, channel_order_id: str) -> ChannelOrder:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return (await db.execute(
                select(ChannelOrder).where(ChannelOrder.channel_order_id == channel_order_id)
            )).scalar_one()


async def test_a_paid_order_is_fulfilled_from_the_quota_and_delivered_once(client, kernel, app, seller, channel):
    listing = await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-A", 5)
    r = await post_callback(client, seller.shop, event_body(paid("O-1", "SKU-A", 2, price=1990)))
    assert r.status_code == 200, r.text
    assert reply_json(r)["status"] == "accepted"
    assert await run_jobs(app, seller.tenant_id) == []

    order = await the_order(kernel, seller.tenant_id, "O-1")
    assert order.status == "fulfilled" and order.total_fen == 3980
    assert order.buyer_phone_masked == "138****5678" and order.buyer_phone_digest
    assert await listing_quota(kernel, seller.tenant_id, listing) == 3
    with tenant_context(seller.tenant_id):
        async with kernel.db.transaction() as db:
            line = (await db.execute(select(ChannelOrderLine).where(ChannelOrderLine.order_id == order.id))).scalar_one()
            codes = list((await db.execute(
                select(ChannelOrderCode).where(ChannelOrderCode.line_id == line.id))).scalars())
    assert (line.quantity, line.unit_price_fen, line.gross_fen, line.cost_fen) == (2, 1990, 3980, 1400)
    assert line.listing_id == listing and line.split_rule == {"channel_bp": 1000, "platform_bp": 200}
    assert [c.state for c in codes] == ["delivered", "delivered"] and all(c.revealed for c in codes)
    assert all(c.unit_cost_fen == 700 and c.batch_id == seller.stocked.batch_id for c in codes)

    state = channel.state(seller.shop.account_id)
    assert len(state.deliveries) == 1
    delivery = next(iter(state.deliveries.values()))
    assert delivery.order_id == "O-1" and len(delivery.codes) == 2
    assert {c.code for c in delivery.codes} <= set(seller.stocked.numbers)
    types = await _event_types(kernel, seller.tenant_id)
    assert {"channel.order_received", "channel.order_fulfilled"} <= types
    with tenant_context(seller.tenant_id):  # the stored message is encrypted: no buyer phone at rest
        async with kernel.db.transaction() as db:
            payload = (await db.execute(select(ChannelMessage.payload))).scalar_one()
    assert b"13812345678" not in payload and b"O-1" not in payload


async def _event_types(kernel, tenant_id) -> set[str]:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return set((await db.execute(select(Event.type))).scalars())


async def test_a_callback_replayed_six_times_fulfils_once(client, kernel, app, seller, channel):
    listing = await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-R", 5)
    body = event_body(paid("O-R", "SKU-R", 1))
    answers = []
    for _ in range(6):
        r = await post_callback(client, seller.shop, body)
        assert r.status_code == 200
        answers.append(reply_json(r)["status"])
    assert answers == ["accepted"] + ["duplicate"] * 5
    # the same order under other message ids (a poll overlapping the callback) is stored once too
    for i in range(3):
        r = await post_callback(client, seller.shop, event_body(paid("O-R", "SKU-R", 1, message_id=f"other-{i}")))
        assert r.status_code == 200
    assert await run_jobs(app, seller.tenant_id) == []
    assert await count(kernel, seller.tenant_id, ChannelMessage) == 4
    assert await count(kernel, seller.tenant_id, ChannelOrder) == 1
    assert await count(kernel, seller.tenant_id, ChannelOrderCode) == 1
    assert await listing_quota(kernel, seller.tenant_id, listing) == 4
    assert len(channel.state(seller.shop.account_id).deliveries) == 1


async def test_bad_callbacks_are_refused_and_nothing_is_stored(client, kernel, seller):
    await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-B", 5)
    body = event_body(paid("O-B", "SKU-B"))
    r = await post_callback(client, seller.shop, body, secret="not-the-secret")
    assert r.status_code == 401 and r.json()["code"] == "channel_callback_signature"
    r = await client.post(f"/channels/{seller.shop.account_id}/callback", content=body)  # unsigned
    assert r.status_code == 401
    r = await post_callback(client, seller.shop, b'{"message_id": 5}')
    assert r.status_code == 400 and r.json()["code"] == "channel_callback_invalid"
    r = await post_callback(client, seller.shop, body, account=str(uuid.uuid4()))
    assert r.status_code == 404 and r.json()["code"] == "channel_account_not_found"
    r = await post_callback(client, seller.shop, body, account="not-a-uuid")
    assert r.status_code == 404
    assert await count(kernel, seller.tenant_id, ChannelMessage) == 0
    assert await count(kernel, seller.tenant_id, ChannelOrder) == 0
    assert await count(kernel, seller.tenant_id, OutboxMessage, OutboxMessage.actor == "process_channel_message") == 0
    # forged callbacks are the connector answering correctly: the account's health is not spoiled by them
    from core.connectors.models import ConnectorAccount

    with tenant_context(seller.tenant_id):
        async with kernel.db.transaction() as db:
            failures = (await db.execute(select(ConnectorAccount.consecutive_failures)
                                         .where(ConnectorAccount.id == seller.shop.account_id))).scalar_one()
    assert failures == 0


async def test_another_tenants_account_id_is_useless(client, kernel, make_tenant, seller, channel):
    """The route enters the account's own tenant and verifies with that account's secret: a caller who knows
    only its own secret gets 401 on another tenant's account, and nothing lands in either tenant."""
    from tests.integration.channel_orders.fake_channel import connect_account

    other = await make_tenant()
    theirs = await connect_account(kernel, other.id, name="Their shop")
    body = event_body(paid("O-X", "SKU-X"))
    r = await post_callback(client, seller.shop, body, account=str(theirs.account_id))
    assert r.status_code == 401
    assert await count(kernel, other.id, ChannelMessage) == 0
    assert await count(kernel, seller.tenant_id, ChannelMessage) == 0


async def test_orders_for_paused_listings_unknown_skus_or_beyond_quota_are_refused(client, kernel, app, seller):
    await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-P", 5, status="paused")
    small = await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-S", 2)
    for event in (paid("O-P", "SKU-P"), paid("O-U", "SKU-NOPE"), paid("O-Q", "SKU-S", 3)):
        r = await post_callback(client, seller.shop, event_body(event))
        assert r.status_code == 200
    assert await run_jobs(app, seller.tenant_id) == []
    refusals = {oid: (await the_order(kernel, seller.tenant_id, oid)).refusal for oid in ("O-P", "O-U", "O-Q")}
    assert refusals == {"O-P": "listing_paused", "O-U": "unknown_sku", "O-Q": "quota_exhausted"}
    assert await listing_quota(kernel, seller.tenant_id, small) == 2  # nothing taken
    assert await count(kernel, seller.tenant_id, ChannelOrderCode) == 0
    assert await count(kernel, seller.tenant_id, Code, Code.state == "available") == 10
    assert "channel.order_refused" in await _event_types(kernel, seller.tenant_id)


async def test_an_order_beyond_the_stock_is_refused_and_gives_the_quota_back(client, kernel, app, seller):
    listing = await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-BIG", 50)
    r = await post_callback(client, seller.shop, event_body(paid("O-BIG", "SKU-BIG", 11)))
    assert r.status_code == 200
    assert await run_jobs(app, seller.tenant_id) == []
    order = await the_order(kernel, seller.tenant_id, "O-BIG")
    assert order.status == "refused" and order.refusal == "out_of_stock"
    assert await listing_quota(kernel, seller.tenant_id, listing) == 50
    assert await count(kernel, seller.tenant_id, Code, Code.state == "available") == 10
