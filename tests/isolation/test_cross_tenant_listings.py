"""Listings: another tenant's listing, account or product ids answer 404 on every endpoint, and change nothing."""

from __future__ import annotations

from tests.integration.channels.conftest import add_account
from tests.integration.grants.shops import open_shop


async def test_listings_never_cross_tenants(client, kernel, make_tenant, make_api_client):
    a = await open_shop(client, kernel, make_tenant, make_api_client)
    b = await open_shop(client, kernel, make_tenant, make_api_client)
    sb = await b.stock(5)
    b_account = await add_account(b)
    r = await b.post("/api/v1/listings", {
        "account_id": str(b_account), "product_id": str(sb.product_id), "sku": "B-1",
        "price_rule": {"kind": "fixed", "price_fen": 100}, "quota": {"kind": "fixed", "value": 3}})
    assert r.status_code == 201
    lid = r.json()["id"]

    sa = await a.stock(5)
    a_account = await add_account(a)
    # B's account or product named in A's request: not found
    r = await a.post("/api/v1/listings", {
        "account_id": str(b_account), "product_id": str(sa.product_id), "sku": "A-1",
        "price_rule": {"kind": "fixed", "price_fen": 100}, "quota": {"kind": "fixed", "value": 1}})
    assert r.status_code == 404 and r.json()["code"] == "account_not_found"
    r = await a.post("/api/v1/listings", {
        "account_id": str(a_account), "product_id": str(sb.product_id), "sku": "A-1",
        "price_rule": {"kind": "fixed", "price_fen": 100}, "quota": {"kind": "fixed", "value": 1}})
    assert r.status_code == 404 and r.json()["code"] == "product_not_found"

    for path in (f"/api/v1/listings/{lid}", f"/api/v1/listings/{lid}/prices",
                 f"/api/v1/listings/products/{sb.product_id}/quota"):
        r = await a.get(path)
        assert r.status_code == 404, path
    r = await a.patch(f"/api/v1/listings/{lid}", {"title": "stolen"})
    assert r.status_code == 404 and r.json()["code"] == "listing_not_found"
    for action in ("pause", "resume"):
        r = await a.post(f"/api/v1/listings/{lid}/{action}")
        assert r.status_code == 404
    assert (await a.get("/api/v1/listings")).json()["items"] == []
    assert (await a.get("/api/v1/listings", account=str(b_account))).json()["items"] == []

    mine = (await b.get(f"/api/v1/listings/{lid}")).json()
    assert mine["status"] == "active" and mine["title"] != "stolen"
