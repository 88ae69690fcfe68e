"""Two tenants, every catalog and inventory endpoint: A can never read, list or change B's products,
batches, codes, reservations, stock, alerts or events; B's objects answer 404 (their existence does not
leak). On PostgreSQL, raw SQL as the app role in A's context sees none of B's inventory rows."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, text

from core.db.context import tenant_context
from core.inventory.allocation import allocate
from core.inventory.models import Code, Reservation
from core.inventory.stock import evaluate_alerts, expire_codes
from tests.integration.inventory.stocking import stock_product
from tests.raw_sql import app_role_engine


@pytest.fixture
async def two_shops(client, kernel, make_tenant, make_api_client):
    a, b = await make_tenant(), await make_tenant()
    ca, cb = await make_api_client(a), await make_api_client(b)
    sa = await stock_product(kernel, a.id, 3, low_stock_threshold=10)
    sb = await stock_product(kernel, b.id, 5, low_stock_threshold=10,
                             expiries=[dt.datetime.now(dt.UTC) - dt.timedelta(days=1)] + [None] * 4)
    with tenant_context(b.id):
        async with kernel.db.transaction() as db:
            held = await allocate(db, sb.product_id, 1, "b's cart", reserve_for=dt.timedelta(hours=1))
            await expire_codes(db)
            await evaluate_alerts(db)
    with tenant_context(a.id):
        async with kernel.db.transaction() as db:
            await evaluate_alerts(db)
    return a, b, ca, cb, sa, sb, held.reservation_id


async def _b_state(kernel, b, sb, reservation_id):
    with tenant_context(b.id):
        async with kernel.db.transaction() as db:
            states = dict((await db.execute(select(Code.id, Code.state).where(Code.batch_id == sb.batch_id))).all())
            res = (await db.execute(select(Reservation.status).where(Reservation.id == reservation_id))).scalar_one()
    return states, res


async def test_tenant_a_never_reads_or_changes_b_inventory(client, kernel, two_shops):
    _, b, ca, cb, sa, sb, reservation_id = two_shops
    before = await _b_state(kernel, b, sb, reservation_id)
    h = ca.headers
    b_product, b_batch, b_code = sb.product_id, sb.batch_id, sb.code_ids[1]

    async def expect_404(method, url, code=None, **kw):
        r = await client.request(method, url, headers=h, **kw)
        assert r.status_code == 404, (method, url, r.text)
        if code:
            assert r.json()["code"] == code
        return r

    # catalog
    await expect_404("GET", f"/api/v1/products/{b_product}", "product_not_found")
    await expect_404("PATCH", f"/api/v1/products/{b_product}", "product_not_found", json={"name_en": "mine now"})
    b_sku = (await client.get(f"/api/v1/products/{b_product}", headers=cb.headers)).json()["sku"]
    listed = (await client.get("/api/v1/products", headers=h, params={"limit": 200})).json()["items"]
    assert [p["id"] for p in listed] == [str(sa.product_id)]
    assert (await client.get("/api/v1/products", headers=h, params={"q": b_sku})).json()["items"] == []
    # stock, batches, codes
    await expect_404("GET", f"/api/v1/products/{b_product}/stock", "product_not_found")
    await expect_404("GET", f"/api/v1/batches/{b_batch}", "batch_not_found")
    await expect_404("GET", "/api/v1/batches", params={"product_id": str(b_product)})
    await expect_404("GET", "/api/v1/codes", params={"batch_id": str(b_batch)})
    await expect_404("GET", "/api/v1/codes", params={"product_id": str(b_product)})
    batches = (await client.get("/api/v1/batches", headers=h)).json()["items"]
    assert [x["id"] for x in batches] == [str(sa.batch_id)]
    codes = (await client.get("/api/v1/codes", headers=h, params={"limit": 500})).json()["items"]
    assert {c["id"] for c in codes} == {str(c) for c in sa.code_ids}
    for state in ("available", "reserved", "expired"):
        got = (await client.get("/api/v1/codes", headers=h, params={"state": state})).json()["items"]
        assert all(c["batch_id"] == str(sa.batch_id) for c in got)
    # custody
    await expect_404("POST", f"/api/v1/codes/{b_code}/reveal", "code_not_found", json={"reason": "curious"})
    await expect_404("POST", f"/api/v1/batches/{b_batch}/export", "batch_not_found", json={"reason": "curious"})
    await expect_404("POST", "/api/v1/codes/void", "code_not_found",
                     json={"code_ids": [str(b_code)], "reason": "sabotage"})
    await expect_404("POST", "/api/v1/codes/void", "code_not_found",
                     json={"code_ids": [str(sa.code_ids[0]), str(b_code)], "reason": "sabotage"})
    # allocation and reservations
    await expect_404("POST", "/api/v1/allocations", "product_not_found",
                     json={"product_id": str(b_product), "quantity": 1, "purpose": "steal"})
    await expect_404("POST", f"/api/v1/reservations/{reservation_id}/confirm", "reservation_not_found")
    await expect_404("POST", f"/api/v1/reservations/{reservation_id}/release", "reservation_not_found")
    # alerts and events: A sees only its own
    alerts = (await client.get("/api/v1/stock-alerts", headers=h)).json()
    assert alerts and {x["product_id"] for x in alerts} == {str(sa.product_id)}
    b_alerts = (await client.get("/api/v1/stock-alerts", headers=cb.headers)).json()
    assert {x["product_id"] for x in b_alerts} == {str(b_product)}
    events = (await client.get("/api/v1/events", headers=h)).json()["items"]
    assert events and all(e["object_id"] == str(sa.product_id) for e in events)
    audit = (await client.get("/api/v1/audit/events", headers=h, params={"limit": 500})).json()["items"]
    assert not any(e["action"] in ("code.revealed", "codes.exported", "codes.voided") for e in audit)
    assert all(e["object_id"] not in {str(b_product), str(b_batch), str(reservation_id)} for e in audit)

    # nothing of B changed
    assert await _b_state(kernel, b, sb, reservation_id) == before
    r = await client.get(f"/api/v1/products/{b_product}/stock", headers=cb.headers)
    assert r.json()["levels"]["reserved"] == 1 and r.json()["levels"]["available"] == 3
    assert (await client.get(f"/api/v1/products/{b_product}", headers=cb.headers)).json()["name_en"] != "mine now"


async def test_raw_sql_as_app_role_sees_only_own_inventory(test_env, two_shops):
    if test_env.backend != "postgresql":
        pytest.skip("PostgreSQL-only: row-level security (set KAQUAN_TEST_DATABASE_URL)")
    a, b, *_ = two_shops
    engine = app_role_engine(test_env.settings)
    tables = ("products", "batches", "codes", "reservations", "stock_alerts", "write_offs", "events")
    try:
        async with engine.connect() as conn:
            for table in tables:
                assert (await conn.execute(text(f"select count(*) from {table}"))).scalar() == 0, table
        async with engine.begin() as conn:
            await conn.execute(text("select set_config('app.tenant_id', :t, true)"), {"t": str(a.id)})
            for table in tables:
                seen = set((await conn.execute(text(f"select distinct tenant_id from {table}"))).scalars())
                assert b.id not in seen, table
            assert (await conn.execute(text("select count(*) from codes"))).scalar() == 3
    finally:
        await engine.dispose()
