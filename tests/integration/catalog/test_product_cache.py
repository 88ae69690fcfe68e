"""The per-process product cache of the grant path (``cached_product``): a change made in this process is
seen at once, one made elsewhere within ``PRODUCT_CACHE_TTL``; a stale product never oversells; a hit is a
copy nobody can change or attach; an uncommitted change is never cached."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import inspect, update

from core.catalog import services as catalog
from core.catalog.models import Product
from tests.integration.grants.shops import Shop, open_shop


@pytest.fixture
async def shop(client, kernel, make_tenant, make_api_client) -> Shop:
    return await open_shop(client, kernel, make_tenant, make_api_client)


async def _cached(shop: Shop, product_id: Any) -> Product:
    product: Product = await shop.run(lambda db: catalog.cached_product(db, product_id))
    return product


async def _grant(shop: Shop, product_id: Any, who: str) -> Any:
    return await shop.post("/api/v1/grants", {"product_id": str(product_id), "external_id": who})


async def test_a_change_in_this_process_is_seen_at_once(shop):
    s = await shop.stock(3)
    assert (await _grant(shop, s.product_id, "a")).status_code == 201  # the product is cached now
    r = await shop.patch(f"/api/v1/products/{s.product_id}", {"status": "inactive"})
    assert r.status_code == 200, r.text
    refused = await _grant(shop, s.product_id, "b")
    assert refused.status_code == 409 and refused.json()["code"] == "product_inactive"
    assert (await shop.patch(f"/api/v1/products/{s.product_id}", {"status": "active"})).status_code == 200
    assert (await _grant(shop, s.product_id, "c")).status_code == 201


async def test_an_orm_update_statement_drops_the_tenants_products(shop):
    s = await shop.stock(1)
    assert (await _cached(shop, s.product_id)).name_en == "Test voucher"
    await shop.run(
        lambda db: db.execute(update(Product).where(Product.id == s.product_id).values(name_en="Renamed"))
    )
    assert (await _cached(shop, s.product_id)).name_en == "Renamed"


async def test_a_change_made_elsewhere_is_seen_within_the_ttl(shop, owner_engine, monkeypatch):
    s = await shop.stock(1)
    assert (await _cached(shop, s.product_id)).name_en == "Test voucher"
    async with owner_engine.begin() as conn:  # another process (no event here)
        table = Product.__table__
        await conn.execute(update(table).where(table.c.id == s.product_id).values(name_en="Elsewhere"))
    assert (await _cached(shop, s.product_id)).name_en == "Test voucher"
    later = time.monotonic() + catalog.PRODUCT_CACHE_TTL + 1
    monkeypatch.setattr(catalog.time, "monotonic", lambda: later)
    assert (await _cached(shop, s.product_id)).name_en == "Elsewhere"


async def test_a_cached_product_never_oversells(shop):
    s = await shop.stock(1)
    assert (await _grant(shop, s.product_id, "first")).status_code == 201
    second = await _grant(shop, s.product_id, "second")  # the product comes from the cache; stock does not
    assert second.status_code == 409 and second.json()["code"] == "out_of_stock"


async def test_a_hit_is_an_unattached_copy(shop):
    s = await shop.stock(1, tags=["gift"])
    first = await _cached(shop, s.product_id)
    hit = await _cached(shop, s.product_id)
    assert hit is not first and inspect(hit).transient and hit.tags == ["gift"]
    hit.tags.append("changed")
    hit.name_en = "changed"
    again = await _cached(shop, s.product_id)
    assert again.tags == ["gift"] and again.name_en == "Test voucher"


async def test_an_uncommitted_change_is_not_cached(shop):
    s = await shop.stock(1)

    async def change_then_read(db: Any) -> str:
        product = await catalog.find_product(db, s.product_id)
        product.name_en = "Uncommitted"
        await db.flush()
        seen = (await catalog.cached_product(db, s.product_id)).name_en
        await db.rollback()
        return seen

    assert await shop.run(change_then_read) == "Uncommitted"  # this transaction sees its own change
    assert (await _cached(shop, s.product_id)).name_en == "Test voucher"
