"""The split ledger written by channel orders, in the events' transactions: sale rows by the rule in force
when the order was placed (sandbox channel and the test channel), refunds reversing, redemption charges and
their rollback, locked periods, and the database refusing to change a written row."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import delete, select, update

from core.channel_orders.fulfilment import order_codes
from core.channel_orders.models import ChannelOrder, ChannelOrderLine
from core.channel_orders.polling import poll_account
from core.channels.models import Listing
from core.connectors.calls import bind_account
from core.db.context import tenant_context
from core.splits.ledger import lock_period, next_period, period_of
from core.splits.models import SplitEntry
from core.splits.rules import create_version
from core.splits.terms import SplitComponent, SplitTerms
from plugins import Buyer, ChannelEvent, OrderLine, RefundNotice, StockItem, StockPush, StockPushResult
from plugins import ChannelOrder as OrderIn
from plugins.builtin import sandbox_channel as sandbox
from tests.integration.channel_orders.fake_channel import (
    ChannelShop,
    add_listing,
    event_body,
    post_callback,
    run_jobs,
)
from tests.integration.channel_orders.test_sandbox import _sandbox_account, sandbox_host
from tests.integration.inventory.stocking import stock_product

__all__ = ["sandbox_host"]

NOW = dt.datetime.now(dt.UTC)


def _rule(*components: SplitComponent, remainder_to: str = "tenant") -> SplitTerms:
    return SplitTerms(components=list(components), remainder_to=remainder_to)  # type: ignore[arg-type]  # literal


async def _new_version(kernel: Any, tenant_id: uuid.UUID, subject: str, terms: SplitTerms | None,
                       valid_from: dt.datetime | None = None) -> uuid.UUID:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            rule = await create_version(db, subject, terms, valid_from=valid_from or NOW - dt.timedelta(days=30),
                                        by="test")
            return rule.id


async def _entries(kernel: Any, tenant_id: uuid.UUID, **where: Any) -> list[SplitEntry]:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            stmt = select(SplitEntry).order_by(SplitEntry.event, SplitEntry.component, SplitEntry.party)
            for k, v in where.items():
                stmt = stmt.where(getattr(SplitEntry, k) == v)
            return list((await db.execute(stmt)).scalars())


def _by(entries: list[SplitEntry], event: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in entries:
        if e.event == event:
            out[e.party] = out.get(e.party, 0) + e.amount_fen
    return out


def _total(entries: list[SplitEntry]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in entries:
        out[e.party] = out.get(e.party, 0) + e.amount_fen
    return out


async def _line(kernel: Any, tenant_id: uuid.UUID, channel_order_id: str) -> ChannelOrderLine:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return (await db.execute(
                select(ChannelOrderLine).join(ChannelOrder, ChannelOrder.id == ChannelOrderLine.order_id)
                .where(ChannelOrder.channel_order_id == channel_order_id))).scalar_one()


def _paid(order_id: str, sku: str, quantity: int, price: int, placed_at: dt.datetime = NOW,
          buyer: str = "buyer-1", referrer: str = "") -> ChannelEvent:
    return ChannelEvent(
        message_id=f"msg-{order_id}", type="order.paid", occurred_at=placed_at,
        order=OrderIn(order_id=order_id, placed_at=placed_at, buyer=Buyer(id=buyer, referrer=referrer),
                      lines=[OrderLine(line_id=f"{order_id}-1", sku=sku, quantity=quantity, unit_price_fen=price)]),
    )


def _refund(order_id: str, quantity: int, refund_id: str, price: int) -> ChannelEvent:
    return ChannelEvent(
        message_id=f"rf-{refund_id}", type="order.refunded", occurred_at=NOW,
        refund=RefundNotice(order_id=order_id, line_id=f"{order_id}-1", refund_id=refund_id, quantity=quantity,
                            amount_fen=quantity * price, reason="buyer asked"),
    )


async def _plain_listing(kernel: Any, shop: ChannelShop, product_id: uuid.UUID, sku: str, quota: int, *,
                         price_fen: int) -> uuid.UUID:
    """A listing without a legacy split of its own (the test channel's helper gives one)."""
    listing = await add_listing(kernel, shop, product_id, sku, quota, price_fen=price_fen)
    with tenant_context(shop.tenant_id):
        async with kernel.db.transaction() as db:
            await db.execute(update(Listing).where(Listing.id == listing).values(split_rule={}))
    return listing


async def test_a_sandbox_order_writes_sale_rows_and_a_refund_reverses_them(
    client, kernel, app, make_tenant, sandbox_host, quiet_relay
):
    tenant = await make_tenant(plan="growth")
    shop = await _sandbox_account(kernel, tenant.id)
    stocked = await stock_product(kernel, tenant.id, 8)
    listing = await _plain_listing(kernel, shop, stocked.product_id, "SBX-S", 6, price_fen=2990)
    rule_id = await _new_version(kernel, tenant.id, "connector:sandbox", _rule(
        SplitComponent(party="channel", basis="sale", bp=1000), SplitComponent(party="platform", basis="sale", bp=200),
        SplitComponent(party="channel", basis="redeemed", bp=100)))
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            bound = await bind_account(db, await kernel.keys.cipher(db), sandbox_host, shop.account_id)
    pushed = await bound.call("push_stock", StockPush(reference="p1", items=[
        StockItem(sku="SBX-S", listing_id=str(listing), available=6, price_fen=2990, version=1)]),
        expect=StockPushResult)
    assert pushed.items[0].status == "ok"
    order = sandbox.place_order(shop.account_id, "SBX-S", 2)
    request = sandbox.signed_callback(shop.secret, sandbox.WORLD.shop(shop.account_id).events[-1])
    r = await client.post(f"/channels/{shop.account_id}/callback", content=request.body, headers=request.headers)
    assert r.status_code == 200
    assert await run_jobs(app, tenant.id) == []

    line = await _line(kernel, tenant.id, order.order_id)
    assert line.split_rule_id == rule_id and line.split_rule["components"][0]["bp"] == 1000
    rows = await _entries(kernel, tenant.id, line_id=line.id)
    # 10% of 59.80 = 5.98; 2% = 1.196 → 1.19; the tenant 52.63 (+0.006 of a fen left, to the tenant)
    assert _by(rows, "sale") == {"channel": 598, "platform": 119, "tenant": 5263}
    assert {e.rule_id for e in rows} == {rule_id} and {e.period for e in rows} == {period_of(NOW, "Asia/Shanghai")}

    # the buyer redeems one code on the channel: 1% of its unit value (29.90 → 0.299 → 0.29) is charged
    delivered = sandbox.WORLD.shop(shop.account_id).received[(order.order_id, order.lines[0].line_id)]
    assert sandbox.redeem_on_channel(shop.account_id, delivered[0].code) is not None
    with tenant_context(tenant.id):
        assert await poll_account(app.state.jobs.env, shop.account_id) == 1
    assert await run_jobs(app, tenant.id) == []
    rows = await _entries(kernel, tenant.id, line_id=line.id)
    assert _by(rows, "redemption") == {"channel": 29, "tenant": -29}

    sandbox.refund(shop.account_id, order.order_id, quantity=1)
    with tenant_context(tenant.id):
        assert await poll_account(app.state.jobs.env, shop.account_id) == 1
    assert await run_jobs(app, tenant.id) == []
    rows = await _entries(kernel, tenant.id, line_id=line.id)
    # half the channel's 598; floor(119 / 2) = 59; the tenant's net makes the reversal 29.90 exactly
    assert _by(rows, "refund") == {"channel": -299, "platform": -59, "tenant": -2632}
    assert sum(e.amount_fen for e in rows) == 2990


async def test_redemption_charges_roll_back_and_a_full_refund_returns_every_party_to_zero(
    client, kernel, app, seller, channel
):
    tid = seller.tenant_id
    listing = await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-LL", 5)
    # the listing's legacy split (10% + 2%) is superseded by a version that stops overriding: the account's
    # local-life rule applies (5% of the redeemed value)
    await _new_version(kernel, tid, f"listing:{listing}", None)
    rule_id = await _new_version(kernel, tid, f"account:{seller.shop.account_id}", _rule(
        SplitComponent(party="channel", basis="redeemed", bp=500)))
    await post_callback(client, seller.shop, event_body(_paid("O-LL", "SKU-LL", 3, 1990)))
    assert await run_jobs(app, tid) == []
    line = await _line(kernel, tid, "O-LL")
    assert line.split_rule_id == rule_id
    assert _by(await _entries(kernel, tid, line_id=line.id), "sale") == {"tenant": 5970}  # nothing until redeemed

    with tenant_context(tid):
        async with kernel.db.transaction() as db:
            codes = await order_codes(db, await kernel.keys.cipher(db), line.order_id)
    code = codes[0][2]
    r = await client.post("/api/v1/redemptions", json={"code": code.code, "pin": code.pin, "store": "S1"},
                          headers=seller.headers)
    assert r.status_code == 201, r.text
    rows = await _entries(kernel, tid, line_id=line.id)
    assert _by(rows, "redemption") == {"channel": 99, "tenant": -99}  # 5% of 19.90 = 0.995 → 0.99
    back = await client.post(f"/api/v1/redemptions/{r.json()['id']}/rollback", json={"reason": "wrong"},
                             headers=seller.headers)
    assert back.status_code == 200, back.text
    rows = await _entries(kernel, tid, line_id=line.id)
    assert _by(rows, "redemption_rollback") == {"channel": -99, "tenant": 99}
    assert [(e.component, e.party) for e in rows if e.event == "redemption_rollback"] == [
        (e.component, e.party) for e in rows if e.event == "redemption"]

    await post_callback(client, seller.shop, event_body(_refund("O-LL", 1, "RF-1", 1990)))
    await post_callback(client, seller.shop, event_body(_refund("O-LL", 2, "RF-2", 1990)))
    await post_callback(client, seller.shop, event_body(_refund("O-LL", 2, "RF-2", 1990)))  # repeated
    assert await run_jobs(app, tid) == []
    rows = await _entries(kernel, tid, line_id=line.id)
    assert _by(rows, "refund") == {"tenant": -5970}
    assert all(v == 0 for v in _total(rows).values())


async def test_orders_get_the_rule_version_in_force_when_placed(client, kernel, app, seller, channel):
    tid = seller.tenant_id
    await _plain_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-V", 8, price_fen=1000)
    v1 = await _new_version(kernel, tid, "connector:test_orders_channel", _rule(
        SplitComponent(party="channel", basis="sale", bp=1000)), NOW - dt.timedelta(days=2))
    v2 = await _new_version(kernel, tid, "connector:test_orders_channel", _rule(
        SplitComponent(party="channel", basis="sale", bp=1500)), NOW - dt.timedelta(days=1))
    await _new_version(kernel, tid, "connector:test_orders_channel", _rule(
        SplitComponent(party="channel", basis="sale", bp=2000)), NOW + dt.timedelta(days=1))  # not yet
    await post_callback(client, seller.shop, event_body(_paid("O-OLD", "SKU-V", 1, 1000, NOW - dt.timedelta(hours=36))))
    await post_callback(client, seller.shop, event_body(_paid("O-NEW", "SKU-V", 1, 1000)))
    assert await run_jobs(app, tid) == []
    old, new = await _line(kernel, tid, "O-OLD"), await _line(kernel, tid, "O-NEW")
    assert (old.split_rule_id, new.split_rule_id) == (v1, v2)
    assert _by(await _entries(kernel, tid, line_id=old.id), "sale") == {"channel": 100, "tenant": 900}
    assert _by(await _entries(kernel, tid, line_id=new.id), "sale") == {"channel": 150, "tenant": 850}


async def test_a_social_rule_pays_the_sharer_from_the_third_buyer(client, kernel, app, seller, channel):
    tid = seller.tenant_id
    await _plain_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-SO", 8, price_fen=1000)
    await _new_version(kernel, tid, f"account:{seller.shop.account_id}", _rule(
        SplitComponent(party="referrer", basis="conversion", bp=500, min_referrals=3)))
    for i, buyer in enumerate(("b1", "b2", "b2", "b3")):
        await post_callback(client, seller.shop, event_body(_paid(
            f"O-SO{i}", "SKU-SO", 1, 1000, NOW - dt.timedelta(minutes=10 - i), buyer=buyer, referrer="amy")))
    assert await run_jobs(app, tid) == []
    got = [_by(await _entries(kernel, tid, line_id=(await _line(kernel, tid, f"O-SO{i}")).id), "sale")
           for i in range(4)]
    assert got[:3] == [{"tenant": 1000}] * 3  # one, two, two distinct buyers
    assert got[3] == {"referrer": 50, "tenant": 950}
    refs = {e.party_ref for e in await _entries(kernel, tid, party="referrer")}
    assert refs == {"amy"}


async def test_a_refund_after_the_period_is_locked_lands_in_the_next(client, kernel, app, seller, channel):
    tid = seller.tenant_id
    await _plain_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-LK", 5, price_fen=1000)
    await _new_version(kernel, tid, f"account:{seller.shop.account_id}", _rule(
        SplitComponent(party="channel", basis="sale", bp=1000)))
    await post_callback(client, seller.shop, event_body(_paid("O-LK", "SKU-LK", 2, 1000)))
    assert await run_jobs(app, tid) == []
    line = await _line(kernel, tid, "O-LK")
    period = period_of(NOW, "Asia/Shanghai")
    with tenant_context(tid):
        async with kernel.db.transaction() as db:
            await lock_period(db, seller.shop.account_id, period, "test")
    await post_callback(client, seller.shop, event_body(_refund("O-LK", 1, "RF-LK", 1000)))
    assert await run_jobs(app, tid) == []
    rows = await _entries(kernel, tid, line_id=line.id)
    assert {e.period for e in rows if e.event == "sale"} == {period}
    assert {e.period for e in rows if e.event == "refund"} == {next_period(period)}
    assert _by(rows, "refund") == {"channel": -100, "tenant": -900}


async def test_the_database_refuses_to_change_or_delete_a_ledger_row(client, kernel, app, seller, channel):
    await _plain_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-AO", 5, price_fen=1000)
    await post_callback(client, seller.shop, event_body(_paid("O-AO", "SKU-AO", 1, 1000)))
    assert await run_jobs(app, seller.tenant_id) == []
    [entry] = await _entries(kernel, seller.tenant_id)
    for stmt in (update(SplitEntry).where(SplitEntry.id == entry.id).values(amount_fen=1),
                 delete(SplitEntry).where(SplitEntry.id == entry.id)):
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"), tenant_context(seller.tenant_id):
            async with kernel.db.transaction() as db:
                await db.execute(stmt)
    [again] = await _entries(kernel, seller.tenant_id)
    assert (again.id, again.amount_fen) == (entry.id, 1000)
