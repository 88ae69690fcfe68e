"""Connector accounts across tenants: another tenant's account id answers 404 on every endpoint (API and
console), changes nothing, and its OAuth2 state cannot authorise anything in another tenant."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx

from tests.integration.connectors.conftest import (  # noqa: F401 (fixtures of the connector tests)
    GOOD_KEY,
    Accounts,
    all_connectors_plan,
    test_connectors,
    token_server,
)
from tests.integration.console.conftest import Browser


async def _tenant(client, kernel, app, make_tenant, make_api_client, plan) -> Accounts:
    tenant = await make_tenant(plan=plan)
    creds = await make_api_client(tenant, ["connectors:read", "connectors:manage"])
    return Accounts(tenant, creds, client, kernel, app)


async def test_another_tenants_connector_account_is_not_found_anywhere(
    client, kernel, app, make_tenant, make_api_client, all_connectors_plan, test_connectors, token_server  # noqa: F811
):
    a = await _tenant(client, kernel, app, make_tenant, make_api_client, all_connectors_plan)
    b = await _tenant(client, kernel, app, make_tenant, make_api_client, all_connectors_plan)
    b_pager = await b.connect("test_pager", "b-pager", api_key=GOOD_KEY)
    b_shop = await b.connect("test_shop", "b-shop", shop_id="s", base_url=token_server.base_url)
    await a.connect("test_pager", "a-pager", api_key=GOOD_KEY)

    listed = (await a.get("/api/v1/connector-accounts")).json()["items"]
    assert [x["name"] for x in listed] == ["a-pager"]
    for account in (b_pager, b_shop):
        base = f"/api/v1/connector-accounts/{account['id']}"
        calls = [
            a.client.get(base, headers=a.headers),
            a.client.get(f"{base}/health", headers=a.headers),
            a.client.patch(base, json={"name": "stolen"}, headers=a.headers),
            a.client.post(f"{base}/test", headers=a.headers),
            a.client.post(f"{base}/pause", headers=a.headers),
            a.client.post(f"{base}/resume", headers=a.headers),
            a.client.post(f"{base}/disconnect", headers=a.headers),
            a.client.post(f"{base}/authorize", headers=a.headers),
        ]
        for call in calls:
            r = await call
            assert r.status_code == 404 and r.json()["code"] == "connector_account_not_found", r.text
    after = (await b.get(f"/api/v1/connector-accounts/{b_pager['id']}")).json()
    assert (after["name"], after["status"], after["secrets_set"]) == ("b-pager", "active", ["api_key"])

    # B's authorisation state names B's account: it authorises B's account only, and only once
    start = (await b.post(f"/api/v1/connector-accounts/{b_shop['id']}/authorize")).json()
    state = parse_qs(urlsplit(start["authorize_url"]).query)["state"][0]
    a_listed = (await a.get("/api/v1/connector-accounts")).json()["items"]
    forged = f"{a_listed[0]['id'].replace('-', '')}.{state.split('.', 1)[1]}"
    r = await client.get("/oauth/connectors/callback", params={"state": forged, "code": token_server.good_code})
    assert r.status_code == 404
    assert token_server.requests == []  # nothing was exchanged

    # the console: A's owner cannot open or act on B's account
    browser = Browser(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local"))
    try:
        r = await browser.console_login(a.tenant.slug, a.tenant.owner_email, a.tenant.owner_password)
        assert r.status_code in (302, 303)
        page = await browser.get(f"/console/connectors/accounts/{b_pager['id']}")
        assert page.status_code == 404
        r = await browser.submit("/console/connectors", f"/console/connectors/accounts/{b_pager['id']}/disconnect", {})
        assert r.status_code == 404
        listing = await browser.get("/console/connectors")
        assert "b-pager" not in listing.text and "a-pager" in listing.text
    finally:
        await browser.http.aclose()
    assert (await b.get(f"/api/v1/connector-accounts/{b_pager['id']}")).json()["status"] == "active"
