"""Local-life third-party codes (三方码): issued synchronously in the callback reply (a repeated request gets the
same codes), queried, and redeemed in both directions — never on both sides."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from core.channel_orders.models import ChannelOrderCode
from core.db.context import tenant_context
from core.inventory.models import Code
from plugins import ChannelEvent, ChannelRedemption, CodeQuery, IssueRequest, OrderLine
from plugins import ChannelOrder as OrderIn
from tests.integration.channel_orders.fake_channel import (
    add_listing,
    event_body,
    post_callback,
    reply_json,
    run_jobs,
)
from tests.integration.channel_orders.test_callbacks import count

NOW = dt.datetime.now(dt.UTC)


def issue(order_id: str, sku: str, quantity: int, message_id: str) -> ChannelEvent:
    order = OrderIn(order_id=order_id, placed_at=NOW,
                    lines=[OrderLine(line_id="1", sku=sku, quantity=quantity, unit_price_fen=990)])
    return ChannelEvent(message_id=message_id, type="code.issue", occurred_at=NOW, issue=IssueRequest(order=order))


def redeemed(order_id: str, code: str, reference: str) -> ChannelEvent:
    return ChannelEvent(message_id=f"red-{reference}", type="code.redeemed", occurred_at=NOW,
                        redemption=ChannelRedemption(order_id=order_id, code=code, redeemed_at=NOW,
                                                     reference=reference, store="门店 1"))


async def test_issue_is_answered_with_codes_and_a_repeat_gets_the_same_codes(client, kernel, app, seller, channel):
    await add_listing(kernel, seller.shop, seller.stocked.product_id, "LL-1", 5)
    first = await post_callback(client, seller.shop, event_body(issue("LL-O1", "LL-1", 2, "iss-1")))
    assert first.status_code == 200, first.text
    out = reply_json(first)
    assert out["status"] == "issued" and len(out["codes"]) == 2
    numbers = {c["code"] for c in out["codes"]}
    assert numbers <= set(seller.stocked.numbers)
    assert all(c["pin"] and c["state"] == "issued" for c in out["codes"])
    for _ in range(5):  # Douyin retries up to six times over ten minutes
        again = await post_callback(client, seller.shop, event_body(issue("LL-O1", "LL-1", 2, "iss-1")))
        assert {c["code"] for c in reply_json(again)["codes"]} == numbers
    assert await count(kernel, seller.tenant_id, ChannelOrderCode) == 2
    assert await run_jobs(app, seller.tenant_id) == []  # nothing queued: issue requests are answered in place
    assert channel.state(seller.shop.account_id).deliveries == {}

    q = ChannelEvent(message_id="q-1", type="code.query", occurred_at=NOW, query=CodeQuery(order_id="LL-O1"))
    answer = reply_json(await post_callback(client, seller.shop, event_body(q)))
    assert answer["status"] == "codes" and {c["code"] for c in answer["codes"]} == numbers

    unknown = ChannelEvent(message_id="q-2", type="code.query", occurred_at=NOW, query=CodeQuery(order_id="nope"))
    assert reply_json(await post_callback(client, seller.shop, event_body(unknown)))["status"] == "refused"


async def test_an_issue_beyond_the_quota_is_refused_in_the_reply(client, kernel, seller):
    await add_listing(kernel, seller.shop, seller.stocked.product_id, "LL-2", 1)
    out = reply_json(await post_callback(client, seller.shop, event_body(issue("LL-O2", "LL-2", 2, "iss-2"))))
    assert out == {"status": "refused", "codes": [], "reason": "quota_exhausted"}


async def test_a_code_verified_on_the_channel_is_redeemed_here_once(client, kernel, app, seller, channel):
    await add_listing(kernel, seller.shop, seller.stocked.product_id, "LL-3", 5)
    out = reply_json(await post_callback(client, seller.shop, event_body(issue("LL-O3", "LL-3", 1, "iss-3"))))
    number = out["codes"][0]["code"]
    for _ in range(3):
        r = await post_callback(client, seller.shop, event_body(redeemed("LL-O3", number, "ch-1")))
        assert r.status_code == 200
    assert await run_jobs(app, seller.tenant_id) == []
    with tenant_context(seller.tenant_id):
        async with kernel.db.transaction() as db:
            held = (await db.execute(select(ChannelOrderCode))).scalar_one()
            code = (await db.execute(select(Code).where(Code.id == held.code_id))).scalar_one()
    assert (held.state, held.redeemed_via, code.state) == ("redeemed", "channel", "redeemed")
    assert channel.state(seller.shop.account_id).reports == {}  # the channel told us: nothing reported back

    # the same code scanned in a store afterwards is refused: never redeemed on both sides
    r = await client.post("/api/v1/redemptions", json={"code": number, "pin": out["codes"][0]["pin"]},
                          headers=seller.headers)
    assert r.status_code == 409 and r.json()["code"] == "already_redeemed"


async def test_a_code_redeemed_in_a_store_is_reported_to_the_channel(client, kernel, app, seller, channel):
    await add_listing(kernel, seller.shop, seller.stocked.product_id, "LL-4", 5)
    out = reply_json(await post_callback(client, seller.shop, event_body(issue("LL-O4", "LL-4", 1, "iss-4"))))
    code = out["codes"][0]
    r = await client.post("/api/v1/redemptions", json={"code": code["code"], "pin": code["pin"], "store": "S1"},
                          headers=seller.headers)
    assert r.status_code == 201, r.text
    assert await run_jobs(app, seller.tenant_id) == []
    reports = channel.state(seller.shop.account_id).reports
    assert len(reports) == 1 and next(iter(reports.values())).code == code["code"]
    with tenant_context(seller.tenant_id):
        async with kernel.db.transaction() as db:
            held = (await db.execute(select(ChannelOrderCode))).scalar_one()
    assert (held.state, held.redeemed_via) == ("redeemed", "kaquan") and held.reported_at is not None

    # the channel then says it verified the same code: refused in the reply (the channel undoes its
    # verification), nothing is redeemed twice, no conflict for a person
    r = await post_callback(client, seller.shop, event_body(redeemed("LL-O4", code["code"], "ch-2")))
    assert r.status_code == 200
    out = reply_json(r)
    assert out["status"] == "refused" and out["reason"].startswith("already_redeemed:")
    assert await run_jobs(app, seller.tenant_id) == []
    from core.events.models import Event

    with tenant_context(seller.tenant_id):
        async with kernel.db.transaction() as db:
            types = list((await db.execute(select(Event.type).where(Event.type.like("channel.%")))).scalars())
            redemptions = await db.scalar(select(Code.state).where(Code.id == held.code_id))
    assert "channel.redemption_conflict" not in types and redemptions == "redeemed"
