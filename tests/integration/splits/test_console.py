"""The console's split-rules page: presets fill the form, the preview shows each event's rows, saving makes a
version, bad input is a readable message on the page, and a viewer cannot save."""

from __future__ import annotations

import datetime as dt
import re

import httpx

from core.db.context import tenant_context
from core.splits.ledger import EntryIn, append
from tenants.users import accept_invite, create_invited_user
from tests.integration.channels.conftest import add_account
from tests.integration.console.conftest import Browser, text_of
from tests.integration.grants.shops import Shop


async def _owner(app, make_tenant):
    tenant = await make_tenant()
    owner = Browser(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local"))
    await owner.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    return tenant, owner


async def test_preset_preview_save_and_versions(app, client, kernel, make_tenant, make_api_client):
    tenant, owner = await _owner(app, make_tenant)
    creds = await make_api_client(tenant)
    account = await add_account(Shop(tenant.id, client, kernel, creds.headers, creds.headers, creds.client_pk),
                                "旗舰店")
    page = await owner.get("/console/split-rules?preset=sale_15")
    assert page.status_code == 200
    assert re.search(r'name="c0_pct" value="15.00"', page.text)
    assert 'data-preset="redeemed_5"' in page.text and "旗舰店" in page.text

    form = {"subject": f"account:{account}", "remainder_to": "tenant", "c0_party": "channel", "c0_basis": "sale",
            "c0_pct": "15", "c1_party": "channel", "c1_basis": "redeemed", "c1_pct": "5", "c1_max": "0.40",
            "ex_gross": "29.99", "ex_quantity": "3", "ex_first": "1"}
    r = await owner.submit("/console/split-rules", "/console/split-rules", {**form, "action": "preview"})
    assert r.status_code == 200, r.text
    assert 'data-section="preview"' in r.text
    assert 'data-row-party="channel" data-amount="449"' in r.text  # 15% of ¥29.99
    assert 'data-row-party="channel" data-amount="40"' in r.text  # 5% of ¥10.00 capped at ¥0.40
    assert "¥4.49" in r.text

    r = await owner.submit("/console/split-rules", "/console/split-rules", {**form, "action": "save",
                                                                            "note": "双十一"},
                           follow_redirects=True)
    assert r.status_code == 200
    assert f'data-subject="account:{account}"' in r.text and 'data-version="1"' in r.text and "双十一" in r.text
    rules = (await client.get("/api/v1/split-rules", headers=creds.headers)).json()["items"]
    assert rules[0]["terms"]["components"][1] == {"party": "channel", "basis": "redeemed", "bp": 500,
                                                   "fixed_fen": 0, "min_fen": None, "max_fen": 40,
                                                   "min_referrals": 0, "label": ""}
    r = await owner.submit("/console/split-rules", "/console/split-rules/clear", {"subject": f"account:{account}"},
                           follow_redirects=True)
    assert r.status_code == 200 and "data-no-override" in r.text

    # the ledger's balances per account and period
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            at = dt.datetime(2026, 11, 30, 17, 0, tzinfo=dt.UTC)  # 1 December in Shanghai
            await append(db, [EntryIn(account_id=account, event="adjustment", event_ref="t1", party=party,
                                      amount_fen=amount, occurred_at=at, component="manual")
                              for party, amount in (("channel", 1234), ("tenant", -234))])
    page = await owner.get("/console/split-rules")
    row = re.search(r'data-balance-row="[^"]+:2026-12">(.*?)</tr>', page.text, re.S)
    assert row is not None and "旗舰店" in row.group(1)
    assert 'data-party="channel">¥12.34' in row.group(1) and 'data-party="tenant">-¥2.34' in row.group(1)
    assert 'data-total="1000"' in row.group(1)
    await owner.http.aclose()


async def test_bad_input_is_a_message_on_the_page(app, make_tenant):
    _tenant, owner = await _owner(app, make_tenant)
    await owner.get("/console/lang?to=en&next=/console/split-rules")
    cases = [
        ({"c0_pct": "12.345"}, "percentage"),
        ({"c0_fixed": "abc"}, "yuan"),
        ({"c0_pct": "10", "c0_min": "5", "c0_max": "1"}, "minimum is above the maximum"),
        ({"c0_pct": "10", "valid_from": "tomorrow"}, "date and time"),
        ({"c0_pct": "10", "ex_quantity": "-2"}, "whole number"),
    ]
    for fields, message in cases:
        r = await owner.submit("/console/split-rules", "/console/split-rules", {
            "subject": "connector:ecommerce", "c0_party": "channel", "c0_basis": "sale", "action": "save", **fields})
        assert r.status_code == 422, (fields, r.status_code)
        assert "data-problem" in r.text and message in text_of(r.text), (fields, text_of(r.text)[:300])
    r = await owner.submit("/console/split-rules", "/console/split-rules", {"action": "save", "c0_pct": "10"})
    assert r.status_code == 422 and "data-problem" in r.text
    page = await owner.get("/console/split-rules")
    assert "data-subject=" not in page.text  # nothing was saved
    await owner.http.aclose()


async def test_a_viewer_previews_but_cannot_save(app, kernel, make_tenant):
    tenant = await make_tenant()
    email = f"viewer@{tenant.slug}.example.com"
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            _user, url = await create_invited_user(kernel, db, email, "viewer", "")
        async with kernel.db.transaction() as db:
            await accept_invite(db, url.rsplit("/", 1)[1], "viewer-password-1")
    viewer = Browser(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local"))
    await viewer.console_login(tenant.slug, email, "viewer-password-1")
    page = await viewer.get("/console/split-rules")
    assert page.status_code == 200 and "data-save-rule" not in page.text
    form = {"subject": "connector:ecommerce", "c0_party": "channel", "c0_basis": "sale", "c0_pct": "10"}
    r = await viewer.submit("/console/split-rules", "/console/split-rules", {**form, "action": "preview"})
    assert r.status_code == 200 and 'data-section="preview"' in r.text
    r = await viewer.submit("/console/split-rules", "/console/split-rules", {**form, "action": "save"})
    assert r.status_code == 403
    r = await viewer.submit("/console/split-rules", "/console/split-rules/clear", {"subject": "connector:ecommerce"})
    assert r.status_code == 403
    await viewer.http.aclose()
