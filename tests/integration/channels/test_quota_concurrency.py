"""On PostgreSQL: concurrent quota changes never sum above the stock, and concurrent sales on three channels
never sell more than each listing's quota or the stock (grants taking the same stock at the same time)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from sqlalchemy import func, select

from core.channels import services
from core.channels.models import Listing
from core.channels.quotas import take_quota
from core.channels.schemas import ListingPatch
from core.db.context import tenant_context
from core.errors import Conflict
from core.inventory.allocation import OutOfStock, allocate, count_available
from tests.integration.channels.conftest import add_account
from tests.integration.channels.test_quotas_and_prices import listing_in


@pytest.fixture(autouse=True)
def _postgres_only(test_env):
    if test_env.backend != "postgresql":
        pytest.skip("concurrency is tested on PostgreSQL")


async def _held(shop, product_id) -> int:
    async def go(db):
        return int(await db.scalar(select(func.coalesce(func.sum(Listing.quota), 0))
                                   .where(Listing.product_id == product_id)))
    return await shop.run(go)


async def test_concurrent_quota_changes_never_sum_above_the_stock(shop, kernel):
    s = await shop.stock(50)
    accounts = [await add_account(shop) for _ in range(12)]

    async def create(i: int) -> bool:
        with tenant_context(shop.id):
            try:
                async with kernel.db.transaction() as db:
                    await services.create_listing(db, listing_in(accounts[i], s.product_id, sku=f"C{i}",
                                                                 quota={"kind": "fixed", "value": 8}))
                return True
            except Conflict:
                return False

    made = await asyncio.gather(*(create(i) for i in range(12)))
    assert sum(made) == 6  # 6 × 8 = 48 ≤ 50; the 7th would need 56
    assert await _held(shop, s.product_id) == 48

    ids = list(await shop.run(lambda db: db.scalars(select(Listing.id).where(Listing.product_id == s.product_id))))

    async def grow(listing_id) -> bool:
        with tenant_context(shop.id):
            try:
                async with kernel.db.transaction() as db:
                    patch = msgspec.convert({"quota": {"kind": "fixed", "value": 10}}, ListingPatch)
                    await services.update_listing(db, listing_id, patch)
                return True
            except Conflict:
                return False

    grown = await asyncio.gather(*(grow(i) for i in ids))
    assert sum(grown) == 1  # only 2 units of room: one listing can grow from 8 to 10
    assert await _held(shop, s.product_id) == 50


async def test_concurrent_sales_on_three_channels_never_oversell(shop, kernel):
    s = await shop.stock(30)
    listings = []
    for i, quota in enumerate((12, 10, 8)):
        account = await add_account(shop)
        li = await shop.run(lambda db, a=account, q=quota, i=i: services.create_listing(
            db, listing_in(a, s.product_id, sku=f"CH{i}", quota={"kind": "fixed", "value": q})))
        listings.append(li.id)
    assert await _held(shop, s.product_id) == 30

    async def sell(i: int) -> tuple[int, list]:
        listing_id = listings[i % 3]
        with tenant_context(shop.id):
            try:
                async with kernel.db.transaction() as db:
                    if not await take_quota(db, listing_id, 1):
                        return i % 3, []
                    got = await allocate(db, s.product_id, 1, f"channel order {i}")
                    return i % 3, [c.id for c in got.codes]
            except OutOfStock:
                return i % 3, []

    async def grant(i: int) -> list:
        with tenant_context(shop.id):
            try:
                async with kernel.db.transaction() as db:
                    return [c.id for c in (await allocate(db, s.product_id, 1, f"grant {i}")).codes]
            except OutOfStock:
                return []

    results = await asyncio.gather(*(sell(i) for i in range(60)), *(grant(i) for i in range(5)))
    sales, grants = results[:60], results[60:]
    codes = [c for _, cs in sales for c in cs] + [c for cs in grants for c in cs]
    assert len(codes) == len(set(codes)) <= 30
    per_channel = [sum(len(cs) for ch, cs in sales if ch == k) for k in range(3)]
    assert per_channel[0] <= 12 and per_channel[1] <= 10 and per_channel[2] <= 8

    async def state(db):
        rows = (await db.execute(select(Listing.quota, Listing.sold).where(Listing.id.in_(listings))
                                 .order_by(Listing.sku))).all()
        return rows, await count_available(db, s.product_id)

    rows, available = await shop.run(state)
    assert [sold for _, sold in rows] == per_channel  # a failed allocation gave its quota back (rollback)
    assert sum(q for q, _ in rows) <= available + sum(len(cs) for cs in grants)
    await shop.run(lambda db: services.stock_changed(db, s.product_id))
    assert await _held(shop, s.product_id) <= await shop.run(lambda db: count_available(db, s.product_id))
