"""After the order: refunds and cancellations (restock or void, quota back), delivery retries and the flag
for a person, polling by cursor, and the API (list, read, retry, per-channel sales)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from core.channel_orders.delivery import MAX_RETRIES, DeliveryRetry, deliver_channel_order
from core.channel_orders.models import ChannelMessage, ChannelOrderCode
from core.channel_orders.polling import poll_channel_orders
from core.connectors.models import ConnectorAccount
from core.db.context import tenant_context
from core.inventory.models import Code
from core.jobs.context import MessageInfo, reset_job_context, set_job_context
from plugins import ChannelEvent, RefundNotice
from tests.integration.channel_orders.fake_channel import (
    add_listing,
    event_body,
    listing_quota,
    post_callback,
    reply_json,
    run_jobs,
)
from tests.integration.channel_orders.test_callbacks import count, paid, the_order

NOW = dt.datetime.now(dt.UTC)


def refund(order_id: str, quantity: int, refund_id: str, *, cancel: bool = False) -> ChannelEvent:
    return ChannelEvent(
        message_id=f"rf-{refund_id}", type="order.cancelled" if cancel else "order.refunded", occurred_at=NOW,
        refund=RefundNotice(order_id=order_id, line_id=f"{order_id}-1", refund_id=refund_id, quantity=quantity,
                            amount_fen=quantity * 1990, reason="buyer asked"),
    )


async def _code_states(kernel, tenant_id) -> dict[str, int]:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            rows = (await db.execute(select(Code.state, func.count()).group_by(Code.state))).all()
    return {s: int(n) for s, n in rows}


async def test_a_refund_of_delivered_codes_voids_them_and_gives_the_quota_back(client, kernel, app, seller, channel):
    listing = await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-RF", 5)
    await post_callback(client, seller.shop, event_body(paid("O-RF", "SKU-RF", 3)))
    assert await run_jobs(app, seller.tenant_id) == []
    assert await listing_quota(kernel, seller.tenant_id, listing) == 2
    for _ in range(3):  # repeated refund notices apply once
        await post_callback(client, seller.shop, event_body(refund("O-RF", 2, "RF-1")))
    assert await run_jobs(app, seller.tenant_id) == []
    order = await the_order(kernel, seller.tenant_id, "O-RF")
    assert order.status == "partially_refunded"
    assert await _code_states(kernel, seller.tenant_id) == {"available": 7, "issued": 1, "voided": 2}
    assert await listing_quota(kernel, seller.tenant_id, listing) == 4  # bounded by what stock others leave
    await post_callback(client, seller.shop, event_body(refund("O-RF", 5, "RF-2")))
    assert await run_jobs(app, seller.tenant_id) == []
    assert (await the_order(kernel, seller.tenant_id, "O-RF")).status == "refunded"
    r = await client.get(f"/api/v1/channel-orders/{order.id}", headers=seller.headers)
    assert r.status_code == 200
    body = r.json()
    assert [x["returned"] + x["voided"] for x in body["refunds"]] == [2, 1]
    assert body["lines"][0]["refunded_quantity"] == 3 and body["lines"][0]["refunded_fen"] == 2 * 1990 + 5 * 1990


async def test_a_cancellation_before_delivery_puts_the_codes_back_in_stock(client, kernel, app, seller, channel):
    listing = await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-CX", 5)
    channel.state(seller.shop.account_id).fail_deliveries = 100
    await post_callback(client, seller.shop, event_body(paid("O-CX", "SKU-CX", 2)))
    errors = await run_jobs(app, seller.tenant_id)
    assert len(errors) == 1 and isinstance(errors[0], DeliveryRetry)  # the channel is down: retried later
    assert await _code_states(kernel, seller.tenant_id) == {"available": 8, "issued": 2}
    await post_callback(client, seller.shop, event_body(refund("O-CX", 2, "CX-1", cancel=True)))
    assert await run_jobs(app, seller.tenant_id) == []
    assert (await the_order(kernel, seller.tenant_id, "O-CX")).status == "cancelled"
    assert await _code_states(kernel, seller.tenant_id) == {"available": 10}
    assert await listing_quota(kernel, seller.tenant_id, listing) == 5
    with tenant_context(seller.tenant_id):
        async with kernel.db.transaction() as db:
            states = set((await db.execute(select(ChannelOrderCode.state))).scalars())
    assert states == {"returned"}
    channel.state(seller.shop.account_id).fail_deliveries = 0


async def _deliver(app, tenant_id, order_id, retries: int) -> BaseException | None:
    info = MessageInfo("m-retry", "deliver_channel_order", tenant_id, None, None, retries)
    tokens = set_job_context(app.state.jobs.env, info)
    try:
        with tenant_context(tenant_id):
            await deliver_channel_order(str(order_id))
    except DeliveryRetry as exc:
        return exc
    finally:
        reset_job_context(tokens)
    return None


async def test_delivery_is_retried_then_flagged_and_a_person_can_retry(client, kernel, app, seller, channel):
    await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-DL", 5)
    state = channel.state(seller.shop.account_id)
    state.fail_deliveries = 2
    await post_callback(client, seller.shop, event_body(paid("O-DL", "SKU-DL", 1)))
    assert len(await run_jobs(app, seller.tenant_id)) == 1
    order = await the_order(kernel, seller.tenant_id, "O-DL")
    assert order.status == "received" and order.attempts == 1 and order.next_attempt_at is not None
    assert isinstance(await _deliver(app, seller.tenant_id, order.id, 1), DeliveryRetry)
    assert await _deliver(app, seller.tenant_id, order.id, 2) is None
    assert (await the_order(kernel, seller.tenant_id, "O-DL")).status == "fulfilled"
    assert len(state.deliveries) == 1 and state.delivery_calls == 3

    state.fail_deliveries = 100
    await post_callback(client, seller.shop, event_body(paid("O-DF", "SKU-DL", 1)))
    assert len(await run_jobs(app, seller.tenant_id)) == 1
    failed = await the_order(kernel, seller.tenant_id, "O-DF")
    assert await _deliver(app, seller.tenant_id, failed.id, MAX_RETRIES) is None  # the last retry: flagged
    failed = await the_order(kernel, seller.tenant_id, "O-DF")
    assert failed.status == "failed" and "503" in failed.last_error

    state.fail_deliveries = 0
    r = await client.post(f"/api/v1/channel-orders/{failed.id}/retry", headers=seller.headers)
    assert r.status_code == 200 and r.json()["status"] == "received"
    assert await run_jobs(app, seller.tenant_id) == []
    assert (await the_order(kernel, seller.tenant_id, "O-DF")).status == "fulfilled"
    r = await client.post(f"/api/v1/channel-orders/{failed.id}/retry", headers=seller.headers)
    assert r.status_code == 409 and r.json()["code"] == "channel_order_not_retryable"


async def test_a_rejected_delivery_flags_the_order_at_once(client, kernel, app, seller, channel):
    await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-RJ", 5)
    channel.state(seller.shop.account_id).reject_deliveries = True
    await post_callback(client, seller.shop, event_body(paid("O-RJ", "SKU-RJ", 1)))
    assert await run_jobs(app, seller.tenant_id) == []
    order = await the_order(kernel, seller.tenant_id, "O-RJ")
    assert order.status == "failed" and "order closed" in order.last_error
    channel.state(seller.shop.account_id).reject_deliveries = False


async def test_polling_stores_each_event_once_and_saves_the_cursor(client, kernel, app, seller, channel):
    await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-PL", 9)
    state = channel.state(seller.shop.account_id)
    state.events = [paid(f"O-PL{i}", "SKU-PL", 1) for i in range(5)]
    # one of them also arrived by callback: stored once
    await post_callback(client, seller.shop, event_body(state.events[1]))

    async def poll() -> None:
        tokens = set_job_context(app.state.jobs.env, None)
        try:
            with tenant_context(seller.tenant_id):
                await poll_channel_orders()
        finally:
            reset_job_context(tokens)

    await poll()
    with tenant_context(seller.tenant_id):
        async with kernel.db.transaction() as db:
            cursor = await db.scalar(select(ConnectorAccount.order_cursor)
                                     .where(ConnectorAccount.id == seller.shop.account_id))
    assert cursor == "5"
    assert await count(kernel, seller.tenant_id, ChannelMessage) == 5
    state.events.append(paid("O-PL5", "SKU-PL", 1))
    await poll()
    assert await count(kernel, seller.tenant_id, ChannelMessage) == 6
    assert await run_jobs(app, seller.tenant_id) == []
    r = await client.get("/api/v1/channel-orders", params={"status": "fulfilled"}, headers=seller.headers)
    assert r.status_code == 200 and len(r.json()["items"]) == 6
    assert {o["source"] for o in r.json()["items"]} == {"poll", "callback"}

    sales = (await client.get("/api/v1/channel-orders/sales", headers=seller.headers)).json()
    mine = next(c for c in sales["channels"] if c["account_id"] == str(seller.shop.account_id))
    assert mine["today"] == {"orders": 6, "units": 6, "gross_fen": 6 * 1990, "refunded_fen": 0,
                             "net_fen": 6 * 1990}
    assert mine["month"]["orders"] == 6


async def test_orders_show_masked_codes_and_never_plaintext(client, kernel, app, seller, channel):
    await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-M", 5)
    out = await post_callback(client, seller.shop, event_body(paid("O-M", "SKU-M", 2)))
    assert reply_json(out)["status"] == "accepted"
    assert await run_jobs(app, seller.tenant_id) == []
    page = (await client.get("/api/v1/channel-orders", headers=seller.headers)).json()
    order_id = page["items"][0]["id"]
    r = await client.get(f"/api/v1/channel-orders/{order_id}", headers=seller.headers)
    text = r.text
    assert r.status_code == 200 and all(n not in text for n in seller.stocked.numbers)
    assert all(c["masked"].startswith("••••") for c in r.json()["lines"][0]["codes"])
    r = await client.get("/api/v1/channel-orders", params={"status": "nonsense"}, headers=seller.headers)
    assert r.status_code == 422


async def test_risk_rules_key_on_the_channel_buyer(client, kernel, app, seller, channel):
    """Seed 004's rule "3 per IP per day", and one order per buyer per day here: the second order of one
    buyer, and the fourth from one IP, are refused; the counted units come back with the refusal."""
    from plugins import Buyer

    r = await client.put("/api/v1/risk/rules", headers=seller.headers, json={
        "limits": [{"action": "grant", "dimension": "device", "window": "day", "limit": 1},
                   {"action": "grant", "dimension": "ip", "window": "day", "limit": 3}],
        "velocity": {"failure_limit": 10, "window_minutes": 10, "lockout_minutes": 15}, "device_member_limit": 3})
    assert r.status_code == 200, r.text
    await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-RK", 9)
    orders = [("RK-1", "b1", "10.0.0.1"), ("RK-2", "b1", "10.0.0.2"), ("RK-3", "b2", "10.0.0.9"),
              ("RK-4", "b3", "10.0.0.9"), ("RK-5", "b4", "10.0.0.9"), ("RK-6", "b5", "10.0.0.9")]
    for oid, buyer, ip in orders:
        event = paid(oid, "SKU-RK", 1, buyer=Buyer(id=buyer, ip=ip))
        assert (await post_callback(client, seller.shop, event_body(event))).status_code == 200
    assert await run_jobs(app, seller.tenant_id) == []
    result = {oid: (await the_order(kernel, seller.tenant_id, oid)) for oid, _, _ in orders}
    assert {k: o.status for k, o in result.items()} == {
        "RK-1": "fulfilled", "RK-2": "refused", "RK-3": "fulfilled", "RK-4": "fulfilled", "RK-5": "fulfilled",
        "RK-6": "refused"}
    assert result["RK-2"].refusal.startswith("risk") and result["RK-6"].refusal.startswith("risk")


async def test_a_hanging_channel_fails_only_its_own_delivery(client, kernel, app, seller, channel, monkeypatch):
    """A delivery call that hangs is cut at its limit and retried later; another tenant's channel account
    delivers meanwhile."""
    import core.channel_orders.delivery as delivery
    from tests.integration.channel_orders.fake_channel import connect_account
    from tests.integration.inventory.stocking import stock_product

    monkeypatch.setattr(delivery, "CALL_LIMIT", 0.3)
    await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-H", 5)
    channel.state(seller.shop.account_id).hang = True
    await post_callback(client, seller.shop, event_body(paid("O-H", "SKU-H", 1)))
    errors = await run_jobs(app, seller.tenant_id)
    assert len(errors) == 1 and isinstance(errors[0], DeliveryRetry)
    hung = await the_order(kernel, seller.tenant_id, "O-H")
    assert hung.status == "received" and "timeout" in hung.last_error
    channel.state(seller.shop.account_id).hang = False

    other = await connect_account(kernel, seller.tenant_id, name="Other shop")
    stocked = await stock_product(kernel, seller.tenant_id, 2)
    await add_listing(kernel, other, stocked.product_id, "SKU-OK", 2)
    await post_callback(client, other, event_body(paid("O-OK", "SKU-OK", 1)))
    assert await run_jobs(app, seller.tenant_id) == []
    assert (await the_order(kernel, seller.tenant_id, "O-OK")).status == "fulfilled"
    with tenant_context(seller.tenant_id):
        async with kernel.db.transaction() as db:
            health = (await db.execute(select(ConnectorAccount.consecutive_failures)
                                       .where(ConnectorAccount.id == seller.shop.account_id))).scalar_one()
    assert health >= 1


async def test_a_recalled_code_is_voided_on_the_order_too(client, kernel, app, seller, channel):
    await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-RC", 5)
    await post_callback(client, seller.shop, event_body(paid("O-RC", "SKU-RC", 2)))
    assert await run_jobs(app, seller.tenant_id) == []
    with tenant_context(seller.tenant_id):
        async with kernel.db.transaction() as db:
            held = list((await db.execute(select(ChannelOrderCode).order_by(ChannelOrderCode.id))).scalars())
    r = await client.post("/api/v1/codes/void", headers=seller.headers,
                          json={"code_ids": [str(held[0].code_id)], "reason": "supplier recall"})
    assert r.status_code == 200, r.text
    with tenant_context(seller.tenant_id):
        async with kernel.db.transaction() as db:
            states = [c.state for c in (await db.execute(select(ChannelOrderCode).order_by(ChannelOrderCode.id))).scalars()]
    assert states == ["voided", "delivered"]


async def test_a_refund_that_overtakes_its_order_waits_for_it(client, kernel, app, seller, channel):
    from core.channel_orders.inbox import store_event
    from core.channel_orders.processing import NotYet, process_message

    await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-OV", 5)
    # by callback, a channel that waits on the decision (third_party_codes) is told to call again
    early = await post_callback(client, seller.shop, event_body(refund("O-OV", 1, "OV-1")))
    assert early.status_code == 503 and early.json()["code"] == "channel_order_not_yet"
    assert early.headers["retry-after"] == "30"
    assert await count(kernel, seller.tenant_id, ChannelMessage) == 0  # nothing stored
    with tenant_context(seller.tenant_id):  # by polling, the queued message waits for its order
        async with kernel.db.transaction() as db:
            await store_event(db, await kernel.keys.cipher(db), seller.shop.account_id,
                              refund("O-OV", 1, "OV-1"), source="poll", queue=True)
    errors = await run_jobs(app, seller.tenant_id)
    assert len(errors) == 1 and isinstance(errors[0], NotYet)  # retried by the job system, not failed
    await post_callback(client, seller.shop, event_body(paid("O-OV", "SKU-OV", 1)))
    assert await run_jobs(app, seller.tenant_id) == []
    with tenant_context(seller.tenant_id):
        async with kernel.db.transaction() as db:
            mid = (await db.execute(select(ChannelMessage.id).where(ChannelMessage.message_id == "rf-OV-1"))).scalar_one()
            assert await process_message(db, kernel, mid, final=False) == "done"
    assert (await the_order(kernel, seller.tenant_id, "O-OV")).status == "refunded"
    with tenant_context(seller.tenant_id):  # a refund for an order that never comes fails on the last try
        async with kernel.db.transaction() as db:
            stored = await store_event(db, await kernel.keys.cipher(db), seller.shop.account_id,
                                       refund("O-NEVER", 1, "NV-1"), source="poll", queue=True)
        async with kernel.db.transaction() as db:
            assert await process_message(db, kernel, stored.message_id, final=True) == "failed"
