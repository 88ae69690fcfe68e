"""Stock sync: one coalesced push per account and window, batches, idempotence, backoff, drift and low alerts."""

from __future__ import annotations

import datetime as dt

import msgspec
from sqlalchemy import select

from core.channels import pushing, services, views
from core.channels.quotas import take_quota
from core.channels.schemas import ListingPatch
from core.channels.sync import PUSH_ACTOR, push_window, request_push
from core.db.base import utcnow
from core.events.models import Event
from core.jobs.models import OutboxMessage
from tests.integration.channels.conftest import add_account
from tests.integration.channels.test_quotas_and_prices import listing_in


async def push_rows(shop, account_id):
    async def go(db):
        rows = (await db.execute(select(OutboxMessage).where(OutboxMessage.actor == PUSH_ACTOR))).scalars()
        return [r for r in rows if str(account_id) in r.business_key]
    return await shop.run(go)


async def _events(db, type_):
    return list((await db.execute(select(Event).where(Event.type == type_))).scalars())


async def test_changes_of_one_account_coalesce_into_one_push_per_window(shop):
    s = await shop.stock(50)
    a1, a2 = await add_account(shop), await add_account(shop)
    start, end = push_window(utcnow())
    now = start + dt.timedelta(milliseconds=500)
    first = await shop.run(lambda db: request_push(db, a1, now=now))
    again = await shop.run(lambda db: request_push(db, a1, now=now + dt.timedelta(milliseconds=1)))
    assert (first, again) == (True, False)
    assert await shop.run(lambda db: request_push(db, a1, now=end)) is True  # the next window

    li = await shop.run(lambda db: services.create_listing(db, listing_in(a2, s.product_id, quota={"kind": "fixed", "value": 20})))
    for _ in range(5):
        assert await shop.run(lambda db: take_quota(db, li.id, 1))
    patch = msgspec.convert({"price_rule": {"kind": "fixed", "price_fen": 1234}}, ListingPatch)
    await shop.run(lambda db: services.update_listing(db, li.id, patch))
    rows = await push_rows(shop, a2)
    windows = {r.business_key for r in rows}
    assert len(rows) == len(windows) <= 3  # one per 2-second window the test spanned, not one per change
    assert all(push_window(r.available_at)[0] == r.available_at for r in rows)  # runs when its window closes


async def test_push_batches_is_idempotent_and_marks_versions(shop, channel, push):
    s = await shop.stock(10)
    account = await add_account(shop)
    ids = []
    for i in range(5):
        li = await shop.run(lambda db, i=i: services.create_listing(
            db, listing_in(account, s.product_id, sku=f"SKU-{i}", quota={"kind": "fixed", "value": 2})))
        ids.append(li.id)
    report = await push(account, batch=2)
    assert (report.calls, report.pushed, report.failed) == (3, 5, 0)
    assert [len(p.items) for p in channel.pushes] == [2, 2, 1]
    assert channel.stock == {f"SKU-{i}": 2 for i in range(5)}
    for li_id in ids:
        got = await shop.run(lambda db, li_id=li_id: services.get_listing(db, li_id))
        assert got.sync == "synced" and got.channel_available == 2 and not got.drift
    again = await push(account, batch=2)
    assert again.calls == 0  # nothing changed: nothing pushed

    await shop.run(lambda db: services.pause_listing(db, ids[0]))
    await push(account)
    last = channel.pushes[-1]
    assert [(i.sku, i.available, i.active) for i in last.items] == [("SKU-0", 0, False)]
    # the same batch at the same versions has the same reference (the channel can deduplicate)
    assert channel.pushes[0].reference != last.reference


async def test_failed_items_are_retried_with_backoff_and_other_accounts_are_untouched(shop, channel, push, monkeypatch):
    s = await shop.stock(10)
    a1, a2 = await add_account(shop), await add_account(shop)
    l1 = await shop.run(lambda db: services.create_listing(db, listing_in(a1, s.product_id, sku="BAD", quota={"kind": "fixed", "value": 3})))
    l2 = await shop.run(lambda db: services.create_listing(db, listing_in(a2, s.product_id, sku="GOOD", quota={"kind": "fixed", "value": 3})))
    channel.fail = {"BAD"}
    report = await push(a1)
    assert report.failed == 1 and report.retry_in == dt.timedelta(seconds=5)
    got = await shop.run(lambda db: services.get_listing(db, l1.id))
    assert got.sync == "failing" and got.push_attempts == 1 and "503" in got.push_error
    sync = {a.account_id: a for a in await shop.run(views.account_sync)}
    assert (sync[a1].failing, sync[a2].pending) == (1, 1)
    retries = [r for r in await push_rows(shop, a1) if ":retry:" in r.business_key]
    assert len(retries) == 1 and retries[0].available_at >= utcnow() + dt.timedelta(seconds=3)

    report = await push(a1)
    assert report.retry_in == dt.timedelta(seconds=10)  # the backoff doubles

    channel.raises = 1  # a raising connector fails this account's call only
    report = await push(a1)
    assert report.failed == 1 and report.retry_in == dt.timedelta(seconds=20)
    assert (await push(a2)).pushed == 1
    assert (await shop.run(lambda db: services.get_listing(db, l2.id))).sync == "synced"

    monkeypatch.setattr(pushing, "PUSH_TIMEOUT", 0.2)
    channel.hangs = 1
    report = await push(a1)
    assert report.failed == 1
    assert "timeout" in (await shop.run(lambda db: services.get_listing(db, l1.id))).push_error

    channel.fail = set()
    report = await push(a1)
    assert report.pushed == 1 and report.retry_in is None
    got = await shop.run(lambda db: services.get_listing(db, l1.id))
    assert got.sync == "synced" and got.push_attempts == 0 and got.push_error == ""
    assert pushing.backoff(30) == pushing.BACKOFF_MAX


async def test_drift_and_low_watermark_raise_alerts_once(shop, channel, push):
    s = await shop.stock(40)
    account = await add_account(shop)
    li = await shop.run(lambda db: services.create_listing(
        db, listing_in(account, s.product_id, sku="D", quota={"kind": "fixed", "value": 20})))
    channel.drift = {"D": 2}
    report = await push(account)
    assert report.drifted == ["D"]
    got = await shop.run(lambda db: services.get_listing(db, li.id))
    assert got.drift and got.channel_available == 18
    drift = await shop.run(lambda db: _events(db, "channel.stock_drift"))
    assert len(drift) == 1 and drift[0].data["expected"] == 20 and drift[0].data["channel_available"] == 18
    (summary,) = [a for a in await shop.run(views.account_sync) if a.account_id == account]
    assert (summary.listings, summary.synced, summary.drifting, summary.failing) == (1, 1, 1, 0)

    assert await shop.run(lambda db: take_quota(db, li.id, 18))  # 2 of 20 left: exactly 10%, not under
    channel.drift = {}
    await push(account)
    got = await shop.run(lambda db: services.get_listing(db, li.id))
    assert not got.drift and not got.low
    assert await shop.run(lambda db: take_quota(db, li.id, 1))  # 1 of 20: under the 10% watermark
    report = await push(account)
    assert report.low == ["D"]
    low = await shop.run(lambda db: _events(db, "channel.listing_low"))
    assert len(low) == 1 and low[0].data["quota"] == 1
    await shop.run(lambda db: services.update_listing(
        db, li.id, msgspec.convert({"quota": {"kind": "fixed", "value": 20}}, ListingPatch)))
    await push(account)
    assert not (await shop.run(lambda db: services.get_listing(db, li.id))).low
    assert len(await shop.run(lambda db: _events(db, "channel.stock_drift"))) == 1


async def test_a_paused_account_is_skipped(shop, push):
    s = await shop.stock(5)
    account = await add_account(shop, status="paused")
    await shop.run(lambda db: services.create_listing(db, listing_in(account, s.product_id, quota={"kind": "fixed", "value": 1})))
    report = await push(account)
    assert report.skipped == "paused" and report.calls == 0
