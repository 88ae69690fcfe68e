"""Allocation: FEFO, all-or-nothing, reservations with TTL, reusable codes, concurrency on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select

from core.db.context import tenant_context
from core.inventory.allocation import OutOfStock, allocate, confirm, release, sweep_lapsed_reservations
from core.inventory.models import Code
from tests.integration.inventory.stocking import stock_product

NOW = dt.datetime.now(dt.UTC)


async def _alloc(kernel, tenant_id, product_id, n, **kw):
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return await allocate(db, product_id, n, "test", **kw)


async def _lapse(kernel, tenant_id, reservation_id):
    """Move a reservation's deadline into the past (instead of sleeping past a short TTL)."""
    from sqlalchemy import update

    from core.inventory.models import Reservation

    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            await db.execute(update(Reservation).where(Reservation.id == reservation_id).values(expires_at=past))
            await db.execute(update(Code).where(Code.reservation_id == reservation_id).values(reserved_until=past))


async def test_first_expiring_first_out_and_expired_never_go_out(kernel, make_tenant):
    t = await make_tenant()
    expiries = [NOW + dt.timedelta(days=d) for d in (30, 5, 90, 10)] + [None, NOW - dt.timedelta(days=1)]
    s = await stock_product(kernel, t.id, 6, expiries=expiries)
    first = await _alloc(kernel, t.id, s.product_id, 2)
    assert [c.expires_at.date() for c in first.codes] == [expiries[1].date(), expiries[3].date()]
    rest = await _alloc(kernel, t.id, s.product_id, 3)
    assert [c.expires_at for c in rest.codes][-1] is None  # no expiry goes last
    with pytest.raises(OutOfStock) as exc:
        await _alloc(kernel, t.id, s.product_id, 1)  # only the expired one is left
    assert exc.value.extra["available"] == 0


async def test_all_or_nothing_when_stock_is_short(kernel, make_tenant):
    t = await make_tenant()
    s = await stock_product(kernel, t.id, 3)
    with pytest.raises(OutOfStock) as exc:
        await _alloc(kernel, t.id, s.product_id, 4)
    assert exc.value.code == "out_of_stock" and exc.value.extra["requested"] == 4
    assert len((await _alloc(kernel, t.id, s.product_id, 3)).codes) == 3


async def test_reservation_lapses_back_to_stock_and_cannot_be_confirmed(kernel, make_tenant):
    t = await make_tenant()
    s = await stock_product(kernel, t.id, 2)
    held = await _alloc(kernel, t.id, s.product_id, 2, reserve_for=dt.timedelta(minutes=10))
    assert held.state == "reserved" and held.reservation_id
    with pytest.raises(OutOfStock):
        await _alloc(kernel, t.id, s.product_id, 1)
    await _lapse(kernel, t.id, held.reservation_id)
    again = await _alloc(kernel, t.id, s.product_id, 2)  # lapsed codes are available again
    assert {c.id for c in again.codes} == {c.id for c in held.codes}
    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            from core.errors import Conflict

            with pytest.raises(Conflict):
                await confirm(db, held.reservation_id)


async def test_confirm_and_release_and_sweep(kernel, make_tenant):
    t = await make_tenant()
    s = await stock_product(kernel, t.id, 4)
    a = await _alloc(kernel, t.id, s.product_id, 2, reserve_for=dt.timedelta(minutes=5))
    b = await _alloc(kernel, t.id, s.product_id, 1, reserve_for=dt.timedelta(minutes=5))
    c = await _alloc(kernel, t.id, s.product_id, 1, reserve_for=dt.timedelta(minutes=10))
    await _lapse(kernel, t.id, c.reservation_id)
    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            issued = await confirm(db, a.reservation_id)
            assert len(issued.codes) == 2
            assert await release(db, b.reservation_id, "customer left") == 1
            assert await sweep_lapsed_reservations(db) == 1
        async with kernel.db.transaction() as db:
            states = dict((await db.execute(select(Code.id, Code.state).where(Code.product_id == s.product_id))).all())
    assert [states[x.id] for x in a.codes] == ["issued", "issued"]
    assert states[b.codes[0].id] == "available" and states[c.codes[0].id] == "available"


async def test_reusable_code_is_handed_out_until_its_uses_run_out(kernel, make_tenant):
    t = await make_tenant()
    s = await stock_product(kernel, t.id, 1, kind="reusable_code", uses=3, with_pin=False)
    a = await _alloc(kernel, t.id, s.product_id, 2)
    assert [c.id for c in a.codes] == [s.code_ids[0]] * 2
    await _alloc(kernel, t.id, s.product_id, 1)
    with pytest.raises(OutOfStock):
        await _alloc(kernel, t.id, s.product_id, 1)


async def test_bad_quantity_and_unknown_product(kernel, make_tenant):
    import uuid

    from core.errors import NotFound, ValidationFailed

    t = await make_tenant()
    s = await stock_product(kernel, t.id, 1)
    for bad in (0, -1, 10_001):
        with pytest.raises(ValidationFailed):
            await _alloc(kernel, t.id, s.product_id, bad)
    with pytest.raises(NotFound):
        await _alloc(kernel, t.id, uuid.uuid4(), 1)


async def _bundle(kernel, tenant_id, items):
    from core.catalog.models import BundleItem, Product

    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            bundle = Product(sku=f"BUNDLE-{len(items)}-{NOW.timestamp()}", kind="bundle", name_zh="组合包")
            db.add(bundle)
            await db.flush()
            for product_id, qty in items:
                db.add(BundleItem(bundle_id=bundle.id, item_id=product_id, quantity=qty))
            return bundle.id


async def test_a_bundle_hands_out_each_item_times_its_quantity(kernel, make_tenant):
    t = await make_tenant()
    movie = await stock_product(kernel, t.id, 5)
    coffee = await stock_product(kernel, t.id, 5)
    bundle_id = await _bundle(kernel, t.id, [(movie.product_id, 1), (coffee.product_id, 2)])
    got = await _alloc(kernel, t.id, bundle_id, 2)
    by_product = {}
    for c in got.codes:
        by_product.setdefault(c.product_id, []).append(c.id)
    assert len(by_product[movie.product_id]) == 2 and len(by_product[coffee.product_id]) == 4
    assert got.product_id == bundle_id and got.state == "issued"


async def test_a_bundle_is_all_or_nothing_and_is_never_reserved(kernel, make_tenant):
    from core.errors import ValidationFailed

    t = await make_tenant()
    movie = await stock_product(kernel, t.id, 5)
    coffee = await stock_product(kernel, t.id, 1)
    bundle_id = await _bundle(kernel, t.id, [(movie.product_id, 1), (coffee.product_id, 2)])
    with pytest.raises(OutOfStock):
        await _alloc(kernel, t.id, bundle_id, 1)  # coffee is short: the movie codes taken go back
    assert len((await _alloc(kernel, t.id, movie.product_id, 5)).codes) == 5
    with pytest.raises(ValidationFailed) as exc:
        await _alloc(kernel, t.id, bundle_id, 1, reserve_for=dt.timedelta(minutes=5))
    assert exc.value.code == "bundle_not_reservable"


async def test_fifty_concurrent_allocators_share_a_thousand_codes_exactly(kernel, make_tenant, test_env):
    if test_env.backend != "postgresql":
        pytest.skip("concurrency is proven on PostgreSQL (CI sets KAQUAN_TEST_DATABASE_URL)")
    t = await make_tenant()
    s = await stock_product(kernel, t.id, 1000, expiries=[NOW + dt.timedelta(days=1 + i % 50) for i in range(1000)])
    got: list = []
    refused = 0

    async def worker() -> None:
        nonlocal refused
        while True:
            try:
                a = await _alloc(kernel, t.id, s.product_id, 10)
            except OutOfStock:
                refused += 1
                return
            got.extend(a.codes)

    await asyncio.gather(*[worker() for _ in range(50)])
    ids = [c.id for c in got]
    assert len(ids) == len(set(ids))  # no code twice
    assert len(ids) == 1000 and set(ids) == set(s.code_ids)  # exactly the 1,000 codes
    assert refused == 50  # then every allocator got a clear out-of-stock
    # FEFO holds within every allocation
    for start in range(0, len(got), 10):
        lot = got[start:start + 10]
        assert [c.expires_at for c in lot] == sorted(c.expires_at for c in lot)
