"""The console's grouped menu (per role), its own 404 page for mistyped URLs, and words that were wrong."""

from __future__ import annotations

import re

from tests.integration.console.conftest import text_of

OLD_TOP_MENU = (
    "/console",
    "/console/products",
    "/console/stock",
    "/console/users",
    "/console/clients",
    "/console/connectors",
    "/console/webhooks",
    "/console/bulk-grants",
    "/console/members",
    "/console/grants",
    "/console/reminders",
    "/console/campaigns",
    "/console/redeem",
    "/console/listings",
    "/console/channel-orders",
    "/console/settlements",
    "/console/risk",
    "/console/audit",
)
"""Every entry the former top menu had (an owner saw them all)."""


def menu_links(html: str) -> list[str]:
    side = html.split('<aside class="sidebar"', 1)[1].split("</aside>", 1)[0]
    return re.findall(r'<a href="([^"]+)" data-nav=', side)


async def test_owner_menu_has_every_former_entry_in_groups(browser, make_tenant):
    tenant = await make_tenant(plan="growth")
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    page = await browser.get("/console/risk")
    assert page.status_code == 200
    links = menu_links(page.text)
    assert set(OLD_TOP_MENU) <= set(links), set(OLD_TOP_MENU) - set(links)
    groups = re.findall(r'data-nav-group="([a-z_]+)"', page.text)
    assert groups == [
        "overview",
        "catalog",
        "distribution",
        "channels",
        "settlement",
        "members",
        "redeem",
        "settings",
    ]
    assert re.search(r'<a href="/console/risk" data-nav="risk" aria-current="page">', page.text)
    assert page.text.count('aria-current="page"') == 1
    # a page below a link marks that link: a batch list belongs to 批次, an import to 库存
    assert 'data-nav="batches" aria-current="page"' in (await browser.get("/console/batches")).text


async def test_viewer_menu_shows_only_what_the_role_may_open(browser, make_tenant, make_user):
    tenant = await make_tenant(plan="growth")
    viewer = await make_user(tenant, "viewer")
    await browser.console_login(tenant.slug, viewer.email, viewer.password)
    page = await browser.get("/console")
    links = menu_links(page.text)
    assert "/console" in links and "/console/users" not in links and "/console/audit" not in links
    for href in links:
        assert (await browser.get(href)).status_code == 200, href
    assert 'data-nav-group="settings"' not in page.text  # a group with no link for the role is left out


async def test_mistyped_console_urls_show_the_consoles_404_page(browser, make_tenant):
    tenant = await make_tenant()
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    for url in ("/console/nonexistent", "/console/grants/not-a-uuid", "/console/products/123/nothing"):
        r = await browser.get(url)
        assert r.status_code == 404, (url, r.status_code)
        assert r.headers["content-type"].startswith("text/html"), (url, r.headers["content-type"])
        assert "页面不存在" in text_of(r.text) and 'href="/console"' in r.text, url
    api = await browser.get("/api/v1/nonexistent")
    assert api.status_code == 404 and api.headers["content-type"].startswith("application/problem+json")


async def test_mistyped_operator_urls_show_the_operator_404_page(browser, operator):
    login = await browser.operator_login(operator.email, operator.password)
    assert login.status_code == 303
    page = await browser.get("/platform/xyz")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "页面不存在" in text_of(page.text) and 'href="/platform' in page.text
    english = await browser.get("/platform/xyz", headers={"Accept-Language": "en"}, cookies={"lang": "en"})
    assert english.status_code == 404 and "Page not found" in text_of(english.text)


async def test_audit_entries_read_as_sentences_not_json(browser, make_tenant):
    tenant = await make_tenant()
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    page = await browser.get("/console/audit")
    text = text_of(page.text)
    assert page.status_code == 200
    for words in ("租户已创建", "已邀请用户", "用户已激活", "登录", "平台运营人员"):
        assert words in text, words
    assert "<dt>角色</dt><dd>所有者</dd>" in page.text  # the role in words, not "owner"
    assert '{"' not in text and "user.invited" not in text  # keys only in attributes (title, data-action)
    assert re.search(r"<dl class=\"kv\" data-details>", page.text)


async def test_grant_status_created_is_not_the_created_column(browser, make_tenant, kernel):
    from tests.integration.inventory.stocking import stock_product

    tenant = await make_tenant()
    stocked = await stock_product(kernel, tenant.id, 2)
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    r = await browser.submit(
        "/console/grants/new",
        "/console/grants/new",
        {"product_id": str(stocked.product_id), "quantity": "1", "phone": "13812345678", "channel": "none"},
        follow_redirects=True,
    )
    assert r.status_code == 200
    header = re.search(r"<h1>.*?</h1>", r.text, re.S)
    assert header and "已创建" in header.group(0) and "创建时间" not in header.group(0)
    listing = await browser.get("/console/grants")
    assert re.search(r'status=created"[^>]*>已创建</a>', listing.text)  # the filter tab
    assert re.search(r'<span class="badge badge-created">已创建</span>', listing.text)
    assert "<th>创建时间</th>" in listing.text  # the column keeps its word


async def test_risk_rules_say_enabled_and_webhook_events_have_names(browser, make_tenant):
    tenant = await make_tenant(plan="growth")
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    risk = await browser.get("/console/risk")
    assert "<th>启用</th>" in risk.text and "<th>正常</th>" not in risk.text
    hooks = text_of((await browser.get("/console/webhooks")).text)
    assert "已发放卡券" in hooks and "券码已核销" in hooks
    assert "Codes were granted to a member or a contact." not in hooks  # the domain's English description
    english = await browser.get("/console/webhooks", cookies={"lang": "en"})
    assert "Codes were granted to a member or a contact." in text_of(english.text)


async def test_connectors_are_described_in_chinese(browser, make_tenant):
    tenant = await make_tenant(plan="growth")
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    text = text_of((await browser.get("/console/connectors")).text)
    assert "系统内置的模拟店铺" in text and "An in-process simulated shop" not in text
