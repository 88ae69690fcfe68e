"""The console's grouped menu (per role), its own 404 page for mistyped URLs, and words that were wrong."""

from __future__ import annotations

import re

from tests.integration.console.conftest import text_of

OLD_TOP_MENU = (
    "/console", "/console/products", "/console/stock", "/console/users", "/console/clients",
    "/console/connectors", "/console/webhooks", "/console/bulk-grants", "/console/members", "/console/grants",
    "/console/reminders", "/console/campaigns", "/console/redeem", "/console/listings",
    "/console/channel-orders", "/console/settlements", "/console/risk", "/console/audit",
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
    assert groups == ["overview", "catalog", "distribution", "channels", "settlement", "members", "redeem", "settings"]
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
    r = await browser.operator_login(operator.email, operator.password)
    page = await browser.get("/platform/xyz")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "页面不存在" in text_of(page.text) and 'href="/platform' in page.text
    english = await browser.get("/platform/xyz", headers={"Accept-Language": "en"}, cookies={"lang": "en"})
    assert english.status_code == 404 and "Page not found" in text_of(english.text)
