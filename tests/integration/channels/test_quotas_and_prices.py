"""Listings through the services: quotas bounded by the stock, take/give back, price rules and history."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from sqlalchemy import func, select

from core.channels import services
from core.channels.jobs import sweep
from core.channels.models import Listing, ListingPriceChange
from core.channels.quotas import give_back_quota, take_quota
from core.channels.schemas import ListingIn, ListingPatch
from core.db.base import utcnow
from core.errors import Conflict, NotFound, ValidationFailed
from core.inventory.allocation import allocate, count_available
from tests.integration.channels.conftest import add_account


def listing_in(account_id, product_id, sku="SKU-1", quota=None, rule=None, **kw) -> ListingIn:
    return msgspec.convert({
        "account_id": str(account_id), "product_id": str(product_id), "sku": sku,
        "price_rule": rule or {"kind": "fixed", "price_fen": 900},
        "quota": quota or {"kind": "fixed", "value": 5}, **kw,
    }, ListingIn)


async def held(shop, product_id) -> int:
    async def go(db):
        return int(await db.scalar(select(func.coalesce(func.sum(Listing.quota), 0))
                                   .where(Listing.product_id == product_id)))
    return await shop.run(go)


async def test_take_quota_is_bounded_and_paused_listings_sell_nothing(shop):
    s = await shop.stock(10)
    account = await add_account(shop)
    li = await shop.run(lambda db: services.create_listing(db, listing_in(account, s.product_id)))
    assert li.quota == 5 and li.price_fen == 900

    assert await shop.run(lambda db: take_quota(db, li.id, 3)) is True
    assert await shop.run(lambda db: take_quota(db, li.id, 3)) is False  # 2 left
    assert await shop.run(lambda db: take_quota(db, li.id, 2)) is True
    got = await shop.run(lambda db: services.get_listing(db, li.id))
    assert (got.quota, got.sold) == (0, 5)
    assert got.version > li.version and got.sync == "pending"

    # a refund gives quota back, but never above the listing's number nor above what the stock leaves
    assert await shop.run(lambda db: give_back_quota(db, li.id, 2)) == 2
    assert await shop.run(lambda db: give_back_quota(db, li.id, 10)) == 3
    got = await shop.run(lambda db: services.get_listing(db, li.id))
    assert (got.quota, got.sold) == (5, 0)

    await shop.run(lambda db: services.pause_listing(db, li.id))
    assert await shop.run(lambda db: take_quota(db, li.id, 1)) is False
    await shop.run(lambda db: services.resume_listing(db, li.id))
    assert await shop.run(lambda db: take_quota(db, li.id, 1)) is True
    with pytest.raises(ValueError):
        await shop.run(lambda db: take_quota(db, li.id, 0))


async def test_take_quota_of_another_tenants_listing_takes_nothing(shop, other_shop):
    s = await shop.stock(4)
    account = await add_account(shop)
    li = await shop.run(lambda db: services.create_listing(
        db, listing_in(account, s.product_id, quota={"kind": "fixed", "value": 4})))
    assert await other_shop.run(lambda db: take_quota(db, li.id, 1)) is False
    assert await other_shop.run(lambda db: give_back_quota(db, li.id, 1)) == 0
    with pytest.raises(NotFound):
        await other_shop.run(lambda db: services.get_listing(db, li.id))
    assert (await shop.run(lambda db: services.get_listing(db, li.id))).quota == 4


async def test_a_quota_above_the_stock_is_refused_and_nothing_is_stored(shop):
    s = await shop.stock(10)
    a1, a2 = await add_account(shop), await add_account(shop)
    await shop.run(lambda db: services.create_listing(db, listing_in(a1, s.product_id, quota={"kind": "fixed", "value": 7})))
    with pytest.raises(Conflict) as refused:
        await shop.run(lambda db: services.create_listing(
            db, listing_in(a2, s.product_id, sku="SKU-2", quota={"kind": "fixed", "value": 4})))
    assert refused.value.code == "quota_above_stock" and refused.value.extra["room"] == 3
    ok = await shop.run(lambda db: services.create_listing(
        db, listing_in(a2, s.product_id, sku="SKU-2", quota={"kind": "fixed", "value": 3})))
    assert ok.quota == 3 and await held(shop, s.product_id) == 10
    # share quotas together at most 100%
    await shop.run(lambda db: services.create_listing(
        db, listing_in(a1, s.product_id, sku="SKU-3", quota={"kind": "share", "value": 6000})))
    with pytest.raises(Conflict) as refused:
        await shop.run(lambda db: services.create_listing(
            db, listing_in(a2, s.product_id, sku="SKU-4", quota={"kind": "share", "value": 5000})))
    assert refused.value.code == "quota_above_stock"
    # raising a fixed quota above the room is refused too
    with pytest.raises(Conflict):
        await shop.run(lambda db: services.update_listing(
            db, ok.id, msgspec.convert({"quota": {"kind": "fixed", "value": 4}}, ListingPatch)))
    assert await held(shop, s.product_id) <= 10


async def test_a_floor_above_the_ceiling_is_refused(shop):
    s = await shop.stock(3)
    account = await add_account(shop)
    rule = {"kind": "factor", "factor_bp": 9000, "floor_fen": 900, "ceiling_fen": 800}
    with pytest.raises(ValidationFailed) as refused:
        await shop.run(lambda db: services.create_listing(db, listing_in(account, s.product_id, rule=rule)))
    assert refused.value.code == "floor_above_ceiling"
    assert refused.value.errors[0].field == "price_rule.floor_fen"
    count = await shop.run(lambda db: db.scalar(select(func.count()).select_from(Listing)))
    assert count == 0


async def test_share_quotas_follow_the_stock_and_fixed_ones_shrink_when_it_falls(shop, kernel):
    s = await shop.stock(20)
    a1, a2 = await add_account(shop), await add_account(shop)
    fixed = await shop.run(lambda db: services.create_listing(
        db, listing_in(a1, s.product_id, quota={"kind": "fixed", "value": 8})))
    share = await shop.run(lambda db: services.create_listing(
        db, listing_in(a2, s.product_id, sku="S", quota={"kind": "share", "value": 5000})))
    assert share.quota == 10  # half of 20 (the fixed 8 leave 12)

    await shop.stock(20, product_id=s.product_id)
    await shop.run(sweep)
    assert (await shop.run(lambda db: services.get_listing(db, share.id))).quota == 20  # half of 40

    # grants take 30 codes: 10 left; the share shrinks first, then the fixed quota
    await shop.run(lambda db: allocate(db, s.product_id, 30, "grant"))
    await shop.run(sweep)
    got_fixed = await shop.run(lambda db: services.get_listing(db, fixed.id))
    got_share = await shop.run(lambda db: services.get_listing(db, share.id))
    assert got_fixed.quota == 8 and got_share.quota == 2
    await shop.run(lambda db: allocate(db, s.product_id, 5, "grant"))
    await shop.run(sweep)
    assert await held(shop, s.product_id) == 5 == await shop.run(lambda db: count_available(db, s.product_id))


async def test_price_rules_and_their_history(shop):
    soon = utcnow() + dt.timedelta(days=5)
    s = await shop.stock(10, expiries=[soon] * 10)
    account = await add_account(shop)
    rule = {"kind": "factor", "base_fen": 10000, "factor_bp": 9000, "floor_fen": 8000, "ceiling_fen": 9500,
            "expiry_steps": [{"days": 30, "off_bp": 500}],
            "pressure_steps": [{"available": 50, "off_bp": 1000}]}
    li = await shop.run(lambda db: services.create_listing(db, listing_in(account, s.product_id, rule=rule)))
    assert li.price_fen == 8550  # 10000 × 0.9 × 0.95 (expiry within 30 days); stock 10 < 50: no pressure

    await shop.stock(60, product_id=s.product_id)  # stock pressure: 70 ≥ 50
    await shop.run(sweep)
    got = await shop.run(lambda db: services.get_listing(db, li.id))
    assert got.price_fen == 8000  # 8550 × 0.9 = 7695, held at the floor

    patch = msgspec.convert({"price_rule": {"kind": "fixed", "price_fen": 9900, "ceiling_fen": 9600}}, ListingPatch)
    got = await shop.run(lambda db: services.update_listing(db, li.id, patch))
    assert got.price_fen == 9600
    history = await shop.run(lambda db: services.price_history(db, li.id))
    assert [(c.old_price_fen, c.new_price_fen, c.reason) for c in history.items] == [
        (8000, 9600, "manual"), (8550, 8000, "expiry+pressure"), (None, 8550, "manual")]

    async def count(db):
        return await db.scalar(select(func.count()).select_from(ListingPriceChange))
    before = await shop.run(count)
    await shop.run(sweep)  # nothing moved: nothing recorded
    assert await shop.run(count) == before


async def test_codes_leaving_the_stock_queue_one_quota_resize_per_listed_product(shop):
    from core.channels.sync import REBALANCE_ACTOR
    from core.inventory.custody import void_codes
    from core.jobs.models import OutboxMessage

    s = await shop.stock(10)
    unlisted = await shop.stock(5)
    account = await add_account(shop)
    li = await shop.run(lambda db: services.create_listing(
        db, listing_in(account, s.product_id, quota={"kind": "share", "value": 10_000})))
    assert li.quota == 10

    async def resizes(db):
        rows = (await db.execute(select(OutboxMessage).where(OutboxMessage.actor == REBALANCE_ACTOR))).scalars()
        return [r.payload["product_id"] for r in rows]

    await shop.run(lambda db: allocate(db, s.product_id, 2, "grant"))
    await shop.run(lambda db: allocate(db, s.product_id, 1, "grant"))
    await shop.run(lambda db: allocate(db, unlisted.product_id, 1, "grant"))
    await shop.run(lambda db: void_codes(db, s.code_ids[-1:], "supplier recall"))
    queued = await shop.run(resizes)
    assert set(queued) == {str(s.product_id)} and len(queued) <= 2  # coalesced per window, unlisted never
    await shop.run(lambda db: services.stock_changed(db, s.product_id))  # what the job does
    assert (await shop.run(lambda db: services.get_listing(db, li.id))).quota == 6


async def test_an_order_line_finds_its_listing_by_account_and_sku(shop, other_shop):
    s = await shop.stock(3)
    a1, a2 = await add_account(shop), await add_account(shop)
    li = await shop.run(lambda db: services.create_listing(
        db, listing_in(a1, s.product_id, sku="SKU-X", quota={"kind": "fixed", "value": 1})))
    found = await shop.run(lambda db: services.listing_by_sku(db, a1, "SKU-X"))
    assert found is not None and found.id == li.id
    assert await shop.run(lambda db: services.listing_by_sku(db, a2, "SKU-X")) is None
    assert await other_shop.run(lambda db: services.listing_by_sku(db, a1, "SKU-X")) is None
