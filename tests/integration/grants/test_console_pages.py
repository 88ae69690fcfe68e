"""Console member and grant pages: list and search members, grant codes by form, see the grant (masked),
void it, and what a viewer may do; in Chinese and English."""

from __future__ import annotations

import re

from sqlalchemy import select

from core.db.context import tenant_context
from core.inventory.models import Code
from tests.integration.console.conftest import text_of
from tests.integration.inventory.stocking import stock_product


async def test_owner_grants_finds_the_member_and_voids(browser, make_tenant, kernel):
    tenant = await make_tenant()
    s = await stock_product(kernel, tenant.id, 3)
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)

    form = await browser.get("/console/grants/new")
    assert form.status_code == 200 and "data-grant-form" in form.text
    bad = await browser.submit(
        "/console/grants/new",
        "/console/grants/new",
        {"product_id": str(s.product_id), "quantity": "2", "phone": "12345"},
    )
    assert bad.status_code == 422 and "data-problem" in bad.text
    r = await browser.submit(
        "/console/grants/new",
        "/console/grants/new",
        {
            "product_id": str(s.product_id),
            "quantity": "2",
            "phone": "13812345678",
            "name": "王五",
            "channel": "none",
        },
        follow_redirects=True,
    )
    assert r.status_code == 200, r.text
    grant_url = str(r.url.path)
    assert re.fullmatch(r"/console/grants/[0-9a-f-]{36}", grant_url)
    page = text_of(r.text)
    assert "138****5678" in page and "王五" in page and not any(n in r.text for n in s.numbers)

    members = await browser.get("/console/members", params={"q": "13812345678"})
    assert "138****5678" in text_of(members.text) and "王五" in members.text
    member_url = re.search(r'href="(/console/members/[0-9a-f-]{36})"', members.text).group(1)
    detail = await browser.get(member_url)
    assert detail.status_code == 200 and detail.text.count("data-item=") == 2
    none = await browser.get("/console/members", params={"q": "13900000000"})
    assert "data-member=" not in none.text

    listing = await browser.get("/console/grants")
    assert "data-grant=" in listing.text
    voided = await browser.submit(
        grant_url, f"{grant_url}/void", {"reason": "entered by mistake"}, follow_redirects=True
    )
    assert voided.status_code == 200 and 'data-grant-status="voided"' in voided.text
    assert "data-void-form" not in voided.text
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            states = set(
                (await db.execute(select(Code.state).where(Code.product_id == s.product_id))).scalars()
            )
    assert states == {"available"}
    en = await browser.get("/console/lang", params={"to": "en", "next": grant_url}, follow_redirects=True)
    assert "Voided" in en.text


async def test_viewer_reads_but_cannot_grant_or_void(new_browser, make_tenant, make_user, kernel):
    tenant = await make_tenant()
    s = await stock_product(kernel, tenant.id, 2)
    owner = new_browser()
    await owner.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    r = await owner.submit(
        "/console/grants/new",
        "/console/grants/new",
        {"product_id": str(s.product_id), "quantity": "1", "email": "v@example.com", "channel": "none"},
        follow_redirects=True,
    )
    grant_url = str(r.url.path)
    viewer = await make_user(tenant, "viewer")
    b = new_browser()
    await b.console_login(tenant.slug, viewer.email, viewer.password)
    page = await b.get(grant_url)
    assert page.status_code == 200 and "data-void-form" not in page.text
    assert (await b.get("/console/grants/new")).status_code == 403
    forged = await b.http.post(
        f"{grant_url}/void",
        data={
            "reason": "x",
            "_csrf_token": re.search(r'name="_csrf_token" value="([^"]+)"', page.text).group(1)
            if "_csrf_token" in page.text
            else "",
        },
    )
    assert forged.status_code == 403
    assert (await b.get("/console/members")).status_code == 200


async def test_other_tenant_gets_404(new_browser, make_tenant, kernel):
    a, b = await make_tenant(), await make_tenant()
    s = await stock_product(kernel, a.id, 1)
    ba, bb = new_browser(), new_browser()
    await ba.console_login(a.slug, a.owner_email, a.owner_password)
    await bb.console_login(b.slug, b.owner_email, b.owner_password)
    r = await ba.submit(
        "/console/grants/new",
        "/console/grants/new",
        {"product_id": str(s.product_id), "quantity": "1", "phone": "13812345678", "channel": "none"},
        follow_redirects=True,
    )
    grant_url = str(r.url.path)
    assert (await bb.get(grant_url)).status_code == 404
    member_url = re.search(r'href="(/console/members/[0-9a-f-]{36})"', r.text).group(1)
    assert (await bb.get(member_url)).status_code == 404
