"""``/api/v1/listings``: create, list, read, change, pause, resume, price history, product quota; refusals."""

from __future__ import annotations

from tests.integration.channels.conftest import add_account


def body(account, product, **kw):
    return {"account_id": str(account), "product_id": str(product), "sku": "JD-1001",
            "price_rule": {"kind": "factor", "base_fen": 10000, "factor_bp": 9000, "floor_fen": 8500},
            "quota": {"kind": "fixed", "value": 6}, "split_rule": {"channel_bp": 1200}, **kw}


async def test_listing_lifecycle_over_the_api(shop):
    s = await shop.stock(10)
    account = await add_account(shop)
    r = await shop.post("/api/v1/listings", body(account, s.product_id))
    assert r.status_code == 201, r.text
    li = r.json()
    assert (li["price_fen"], li["quota"], li["status"], li["sync"]) == (9000, 6, "active", "pending")
    assert li["split_rule"] == {"channel_bp": 1200}

    r = await shop.get("/api/v1/listings", account=str(account))
    assert [x["id"] for x in r.json()["items"]] == [li["id"]]
    assert (await shop.get(f"/api/v1/listings/{li['id']}")).json()["sku"] == "JD-1001"

    r = await shop.patch(f"/api/v1/listings/{li['id']}", {"price_rule": {"kind": "fixed", "price_fen": 8800},
                                                           "quota": {"kind": "share", "value": 5000}})
    assert r.status_code == 200, r.text
    assert (r.json()["price_fen"], r.json()["quota"], r.json()["quota_kind"]) == (8800, 5, "share")

    r = await shop.post(f"/api/v1/listings/{li['id']}/pause")
    assert r.status_code == 200 and r.json()["status"] == "paused"
    assert (await shop.get("/api/v1/listings", status="paused")).json()["items"][0]["id"] == li["id"]
    r = await shop.post(f"/api/v1/listings/{li['id']}/resume")
    assert r.json()["status"] == "active"

    prices = (await shop.get(f"/api/v1/listings/{li['id']}/prices")).json()["items"]
    assert [(p["old_price_fen"], p["new_price_fen"], p["reason"]) for p in prices] == [
        (9000, 8800, "manual"), (None, 9000, "manual")]
    quota = (await shop.get(f"/api/v1/listings/products/{s.product_id}/quota")).json()
    assert quota == {"product_id": str(s.product_id), "available": 10, "held": 5}


async def test_bad_listings_are_refused_clearly_and_nothing_is_stored(shop):
    s = await shop.stock(4)
    account = await add_account(shop)
    notifier = await add_account(shop, kind="notifier")

    r = await shop.post("/api/v1/listings", body(account, s.product_id, quota={"kind": "fixed", "value": 5}))
    assert r.status_code == 409 and r.json()["code"] == "quota_above_stock"
    r = await shop.post("/api/v1/listings", body(account, s.product_id, price_rule={
        "kind": "fixed", "price_fen": 1000, "floor_fen": 900, "ceiling_fen": 800}))
    assert r.status_code == 422 and r.json()["code"] == "floor_above_ceiling"
    r = await shop.post("/api/v1/listings", body(account, s.product_id, price_rule={"kind": "fixed", "price_fen": 9.5}))
    assert r.status_code in (400, 422)
    r = await shop.post("/api/v1/listings", body(notifier, s.product_id, quota={"kind": "fixed", "value": 1}))
    assert r.status_code == 422 and r.json()["code"] == "not_a_channel"
    r = await shop.post("/api/v1/listings", body(account, s.product_id, quota={"kind": "share", "value": 10001}))
    assert r.status_code == 422 and r.json()["code"] == "share_above_whole"
    assert (await shop.get("/api/v1/listings")).json()["items"] == []

    ok = await shop.post("/api/v1/listings", body(account, s.product_id, quota={"kind": "fixed", "value": 2}))
    assert ok.status_code == 201
    r = await shop.post("/api/v1/listings", body(account, s.product_id, quota={"kind": "fixed", "value": 1}))
    assert r.status_code == 409 and r.json()["code"] == "listing_sku_taken"
    r = await shop.get("/api/v1/listings/0190a1b2-0000-7000-8000-000000000000")
    assert r.status_code == 404 and r.json()["code"] == "listing_not_found"
