"""Split rules and the split ledger: another tenant's rules, accounts, listings and ledger rows are not
found on any endpoint or console page, and nothing of theirs changes."""

from __future__ import annotations

import datetime as dt

import httpx

from core.db.context import tenant_context
from core.splits.ledger import EntryIn, append
from tests.integration.channels.conftest import add_account
from tests.integration.console.conftest import Browser
from tests.integration.grants.shops import Shop, open_shop

TERMS = {"components": [{"party": "channel", "basis": "sale", "bp": 1000}]}


async def test_split_rules_and_ledger_never_cross_tenants(client, kernel, make_tenant, make_api_client):
    a = await open_shop(client, kernel, make_tenant, make_api_client)
    b = await open_shop(client, kernel, make_tenant, make_api_client)
    b_account = await add_account(b)
    r = await b.post("/api/v1/split-rules", {"subject": f"account:{b_account}", "terms": TERMS})
    assert r.status_code == 201
    rid = r.json()["id"]

    assert (await a.get(f"/api/v1/split-rules/{rid}")).status_code == 404
    assert (await a.get("/api/v1/split-rules")).json()["items"] == []
    assert (await a.get("/api/v1/split-rules", subject=f"account:{b_account}")).json()["items"] == []
    r = await a.post("/api/v1/split-rules", {"subject": f"account:{b_account}", "terms": TERMS})
    assert r.status_code == 404 and r.json()["code"] == "split_subject_not_found"
    r = await a.get("/api/v1/split-rules/in-force", account=str(b_account))
    assert r.status_code == 404
    r = await a.post("/api/v1/split-rules/preview", {"rule_id": rid, "gross_fen": 100})
    assert r.status_code == 404 and r.json()["code"] == "split_rule_not_found"
    assert (await a.get("/api/v1/split-ledger", account=str(b_account))).json()["items"] == []
    assert (await a.get("/api/v1/split-ledger/balances", account=str(b_account))).json()["items"] == []

    mine = (await b.get("/api/v1/split-rules", subject=f"account:{b_account}")).json()["items"]
    assert [x["id"] for x in mine] == [rid]


async def test_console_split_rules_never_cross_tenants(app, client, kernel, make_tenant, make_api_client):
    a, b_handle = await make_tenant(), await make_tenant(plan="growth")
    creds = await make_api_client(b_handle)
    b = Shop(b_handle.id, client, kernel, creds.headers, creds.headers, creds.client_pk)
    b_account = await add_account(b, "B-secret-shop")
    r = await b.post("/api/v1/split-rules", {"subject": f"account:{b_account}", "terms": TERMS, "note": "B-note"})
    assert r.status_code == 201
    with tenant_context(b_handle.id):
        async with kernel.db.transaction() as db:
            await append(db, [EntryIn(account_id=b_account, event="adjustment", event_ref="b", party="channel",
                                      amount_fen=777, occurred_at=dt.datetime.now(dt.UTC))])

    owner = Browser(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local"))
    await owner.console_login(a.slug, a.owner_email, a.owner_password)
    page = await owner.get("/console/split-rules")
    assert page.status_code == 200 and "B-secret-shop" not in page.text and "B-note" not in page.text
    assert 'data-section="balances"' not in page.text and "¥7.77" not in page.text
    page = await owner.get(f"/console/split-rules?subject=account:{b_account}")
    assert page.status_code == 200 and "B-secret-shop" not in page.text
    for action in ("/console/split-rules", "/console/split-rules/clear"):
        r = await owner.submit("/console/split-rules", action, {
            "subject": f"account:{b_account}", "action": "save", "c0_party": "channel", "c0_basis": "sale",
            "c0_pct": "50"}, follow_redirects=False)
        assert r.status_code in (303, 404), r.text
    versions = (await b.get("/api/v1/split-rules", subject=f"account:{b_account}")).json()["items"]
    assert [v["version"] for v in versions] == [1]
    await owner.http.aclose()
