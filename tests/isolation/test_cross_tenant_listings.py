"""Listings: another tenant's listing, account or product ids answer 404 on every endpoint, and change nothing."""

from __future__ import annotations

import httpx

from core.db.context import tenant_context
from tenants.users import accept_invite, create_invited_user
from tests.integration.channels.conftest import add_account
from tests.integration.console.conftest import Browser
from tests.integration.grants.shops import Shop, open_shop


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



async def test_console_listing_pages_never_cross_tenants(
    app, client, kernel, make_tenant, make_api_client
):
    a, b_handle = await make_tenant(), await make_tenant(plan="growth")
    creds = await make_api_client(b_handle)
    b = Shop(b_handle.id, client, kernel, creds.headers, creds.headers, creds.client_pk)
    sb = await b.stock(5)
    r = await b.post("/api/v1/listings", {
        "account_id": str(await add_account(b)), "product_id": str(sb.product_id), "sku": "B-1",
        "price_rule": {"kind": "fixed", "price_fen": 100}, "quota": {"kind": "fixed", "value": 3}})
    lid = r.json()["id"]

    owner = Browser(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local"))
    await owner.console_login(a.slug, a.owner_email, a.owner_password)
    page = await owner.get("/console/listings")
    assert page.status_code == 200 and "B-1" not in page.text
    assert (await owner.get(f"/console/listings/{lid}")).status_code == 404
    for action in ("", "/pause", "/resume"):
        r = await owner.submit("/console/listings", f"/console/listings/{lid}{action}",
                               {"title": "stolen", "quota_kind": "fixed", "quota_value": "1"})
        assert r.status_code == 404, action
    mine = (await b.get(f"/api/v1/listings/{lid}")).json()
    assert mine["status"] == "active" and mine["title"] != "stolen" and mine["quota"] == 3

    # a viewer of B reads the pages but gets no forms, and cannot change anything
    email = f"viewer@{b_handle.slug}.example.com"
    with tenant_context(b_handle.id):
        async with kernel.db.transaction() as db:
            _user, url = await create_invited_user(kernel, db, email, "viewer", "")
        async with kernel.db.transaction() as db:
            await accept_invite(db, url.rsplit("/", 1)[1], "viewer-password-1")
    vb = Browser(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local"))
    await vb.console_login(b_handle.slug, email, "viewer-password-1")
    page = await vb.get(f"/console/listings/{lid}")
    assert page.status_code == 200 and "data-listing-form" not in page.text and "data-pause" not in page.text
    r = await vb.submit(f"/console/listings/{lid}", f"/console/listings/{lid}/pause", {})
    assert r.status_code == 403
    for browser in (owner, vb):
        await browser.http.aclose()
