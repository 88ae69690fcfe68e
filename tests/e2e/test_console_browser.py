"""The console in headless Chromium: an operator onboards a tenant; its owner sets the console up."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.conftest import unique
from tests.e2e.conftest import SCREENSHOTS, LiveServer, OperatorAccount, onboard_via_api

pytestmark = pytest.mark.browser


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def test_operator_logs_in_and_onboards_a_tenant(
    page: Any, live_server: LiveServer, operator_account: OperatorAccount
) -> None:
    expect = _expect()
    page.goto("/platform/tenants")
    expect(page).to_have_url(re.compile(r"/platform/login\?next="))
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    page.fill("#f-email", operator_account.email)
    page.fill("#f-password", "wrong-password-1")
    page.click("button[type=submit]")
    expect(page.locator("[data-problem]")).to_have_text("邮箱或密码错误")
    page.fill("#f-password", operator_account.password)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{live_server.url}/platform/tenants")

    page.get_by_role("link", name="开通租户").first.click()
    expect(page.locator("#f-timezone")).to_have_value("Asia/Shanghai")
    expect(page.locator("#f-currency")).to_have_value("CNY")
    slug = unique("tea-")
    page.fill("#f-name", "春茶小铺")
    page.fill("#f-slug", slug)
    page.fill("#f-owner_email", f"owner@{slug}.example.com")
    page.select_option("#f-plan", "growth")
    page.click("form.form button[type=submit]")

    link = page.locator('[data-secret="owner-invite"]')
    expect(link).to_have_text(re.compile(rf"^{re.escape(live_server.url)}/console/invite/kqi_"))
    invite = link.inner_text().strip()
    expect(page.locator("h1")).to_contain_text("春茶小铺")
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-tenant-onboarded.png"), full_page=True)

    page.get_by_role("link", name="返回租户列表").click()
    row = page.locator(f'tr[data-tenant="{slug}"]')
    expect(row).to_contain_text("正常")
    expect(row).to_contain_text("成长版")
    assert invite not in page.content()
    row.get_by_role("link").first.click()
    expect(page.locator("h1")).to_have_text("春茶小铺")
    assert invite not in page.content()  # the link was shown once, on the result page only

    page.fill("#f-reason", "e2e check")
    page.get_by_role("button", name="暂停租户").click()
    expect(page.locator(".alert-success")).to_contain_text("已暂停")
    page.get_by_role("button", name="恢复租户").click()
    expect(page.locator(".alert-success")).to_contain_text("已恢复")
    page.get_by_role("link", name="套餐").click()
    expect(page.locator('tr[data-plan="starter"]')).to_be_visible()


def test_owner_accepts_invite_switches_language_invites_user_and_manages_api_client(
    page: Any, live_server: LiveServer, operator_account: OperatorAccount
) -> None:
    expect = _expect()
    slug = unique("cafe-")
    invite = onboard_via_api(live_server, operator_account, slug)
    owner_email, password = f"owner@{slug}.example.com", "owner-password-e2e"

    page.goto(invite)
    expect(page.locator("h1")).to_contain_text(f"Shop {slug}")
    page.fill("#f-name", "店长")
    page.fill("#f-password", password)
    page.fill("#f-password_confirm", password)
    page.click("form.form button[type=submit]")
    expect(page).to_have_url(f"{live_server.url}/console/login")
    expect(page.locator(".alert-success")).to_contain_text("密码已设置")
    expect(page.locator("#f-tenant")).to_have_value(slug)
    expect(page.locator("#f-email")).to_have_value(owner_email)
    page.fill("#f-password", password)
    page.click("form.form button[type=submit]")
    expect(page).to_have_url(f"{live_server.url}/console")
    expect(page.locator("h1")).to_have_text(f"Shop {slug}")
    expect(page.get_by_role("navigation").get_by_role("link", name="概览")).to_be_visible()

    page.click('[data-lang="en"]')
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("navigation").get_by_role("link", name="Dashboard")).to_be_visible()
    expect(page.get_by_text("API requests per minute")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-dashboard-en.png"), full_page=True)
    page.click('[data-lang="zh-CN"]')
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_text("每分钟 API 请求数")).to_be_visible()

    page.get_by_role("navigation").get_by_role("link", name="用户").click()
    clerk = f"clerk@{slug}.example.com"
    page.fill("#f-email", clerk)
    page.select_option("#f-role", "admin")
    page.get_by_role("button", name="发送邀请").click()
    invite_link = page.locator('[data-secret="invite"]')
    expect(invite_link).to_have_text(re.compile(r"/console/invite/kqi_"))
    user_link = invite_link.inner_text().strip()
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-users.png"), full_page=True)
    expect(page.locator(f'tr[data-user="{clerk}"]')).to_contain_text("已邀请")
    page.select_option(f'tr[data-user="{clerk}"] select[name="role"]', "finance")  # saves on change
    expect(page.locator(".alert-success")).to_contain_text(f"{clerk} 的角色已改为 财务")
    page.reload()  # a GET of the page: the link is gone for good
    expect(page.locator(f'tr[data-user="{clerk}"]')).to_be_visible()
    assert user_link not in page.content()

    page.get_by_role("navigation").get_by_role("link", name="API 客户端").click()
    page.fill("#f-name", "门店 POS")
    page.check('input[name="scopes"][value="tenant:read"]')
    page.check('input[name="scopes"][value="audit:read"]')
    page.get_by_role("button", name="创建客户端").click()
    secret_box = page.locator('[data-secret="client-secret"]')
    expect(secret_box).to_have_text(re.compile(r"^kqs_"))
    secret = secret_box.inner_text().strip()
    client_id = page.locator('[data-secret="client-id"]').inner_text().strip()
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-client-secret.png"), full_page=True)

    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        token = http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
        assert token.status_code == 200, token.text
        page.goto("/console/clients")
        assert secret not in page.content()
        row = page.locator('tr[data-client="门店 POS"]')
        expect(row).to_contain_text("正常")
        row.get_by_role("button", name="吊销").click()  # confirm() is accepted by the page fixture
        expect(page.locator(".alert-success")).to_contain_text("已吊销")
        expect(page.locator('tr[data-client="门店 POS"]')).to_contain_text("已吊销")
        refused = http.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )
        assert refused.status_code in (400, 401)

    page.get_by_role("navigation").get_by_role("link", name="审计日志").click()
    page.get_by_role("button", name="校验审计链").click()
    expect(page.locator('[data-report="ok"]')).to_contain_text("审计链完整")


def test_console_on_a_phone(
    chromium: Any, live_server: LiveServer, operator_account: OperatorAccount
) -> None:
    expect = _expect()
    slug = unique("mobile-")
    invite = onboard_via_api(live_server, operator_account, slug)
    context = chromium.new_context(
        base_url=live_server.url,
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
    )
    try:
        page = context.new_page()
        page.goto(invite)
        page.fill("#f-password", "owner-password-mobile")
        page.fill("#f-password_confirm", "owner-password-mobile")
        page.click("form.form button[type=submit]")
        page.fill("#f-password", "owner-password-mobile")
        page.click("form.form button[type=submit]")
        expect(page).to_have_url(f"{live_server.url}/console")
        nav = page.get_by_role("navigation")
        expect(nav).to_be_hidden()
        page.click("[data-nav-toggle]")
        expect(nav).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
        page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-phone.png"), full_page=True)
    finally:
        context.close()


def _owner_context(chromium: Any, live_server: LiveServer, operator_account: OperatorAccount, language: str,
                   **options: Any) -> Any:
    """A browser context in ``language`` with a freshly onboarded owner logged in (at /console)."""
    expect = _expect()
    slug = unique("nav-")
    invite = onboard_via_api(live_server, operator_account, slug)
    context = chromium.new_context(base_url=live_server.url, locale=language, **options)
    context.add_cookies([{"name": "lang", "value": language, "url": live_server.url}])
    page = context.new_page()
    page.goto(invite)
    page.fill("#f-password", "owner-password-nav")
    page.fill("#f-password_confirm", "owner-password-nav")
    page.click("form.form button[type=submit]")
    page.fill("#f-password", "owner-password-nav")
    page.click("form.form button[type=submit]")
    expect(page).to_have_url(f"{live_server.url}/console")
    expect(page.locator("html")).to_have_attribute("lang", language)
    return context, page


def _inside(page: Any, selector: str, width: int) -> None:
    for i, box in enumerate(page.locator(selector).evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.left, r.right, r.width]; })"
    )):
        left, right, w = box
        assert w > 0 and left >= 0 and right <= width + 0.5, f"{selector}[{i}] is off-screen at {width}px: {box}"


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_sidebar_menu_fits_desktop_widths(
    chromium: Any, live_server: LiveServer, operator_account: OperatorAccount, language: str
) -> None:
    """The grouped sidebar, the language switch, the user and 退出 are all on screen at 1280, 1366 and 1920 px,
    and no page scrolls sideways (the former top menu was 1655 px wide at 1366 in Chinese)."""
    expect = _expect()
    context, page = _owner_context(chromium, live_server, operator_account, language,
                                   viewport={"width": 1280, "height": 800})
    try:
        groups = page.locator("[data-nav-group]")
        expect(groups).to_have_count(8)
        assert page.locator("[data-nav]").count() >= 22
        for width in (1280, 1366, 1920):
            page.set_viewport_size({"width": width, "height": 800})
            for path in ("/console", "/console/settlements", "/console/kpis", "/console/audit"):
                page.goto(path)
                scroll = page.evaluate("document.scrollingElement.scrollWidth")
                assert scroll <= width, f"{path} scrolls sideways at {width}px in {language} ({scroll}px)"
                expect(page.locator("[data-sidebar]")).to_be_visible()
                expect(page.locator("[data-nav-toggle]")).to_be_hidden()
                _inside(page, "[data-nav]", width)
                _inside(page, ".lang-switch, .me, [data-logout]", width)
                for link in page.locator("[data-nav]").all():  # no label is cut off by the sidebar
                    assert link.evaluate("e => e.scrollWidth <= e.clientWidth"), link.inner_text()
        page.screenshot(path=str(SCREENSHOTS / f"kaquan-e2e-desktop-{language}.png"), full_page=False)
        current = page.locator('[data-nav][aria-current="page"]')
        expect(current).to_have_count(1)
        expect(current).to_have_attribute("href", "/console/audit")
    finally:
        context.close()


@pytest.mark.parametrize("script", [True, False], ids=["js", "no-js"])
def test_sidebar_collapses_behind_a_menu_button_on_a_phone(
    chromium: Any, live_server: LiveServer, operator_account: OperatorAccount, script: bool
) -> None:
    """At 390 px the menu is behind 菜单 (with and without JavaScript); the language switch, the user and
    退出 stay in the top bar."""
    expect = _expect()
    context, page = _owner_context(chromium, live_server, operator_account, "zh-CN",
                                   viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                   java_script_enabled=script)
    try:
        page.goto("/console/members")
        sidebar = page.locator("[data-sidebar]")
        expect(sidebar).to_be_hidden()
        _inside(page, ".lang-switch, .me, [data-logout], [data-nav-toggle]", 390)
        page.click("[data-nav-toggle]")
        expect(sidebar).to_be_visible()
        _inside(page, "[data-nav]", 390)
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
        if script:
            expect(page.locator("[data-nav-toggle]")).to_have_attribute("aria-expanded", "true")
        page.screenshot(path=str(SCREENSHOTS / f"kaquan-e2e-phone-menu-{'js' if script else 'nojs'}.png"))
        page.locator("[data-nav]", has_text="审计日志").click()
        expect(page).to_have_url(f"{live_server.url}/console/audit")
        expect(page.locator("h1")).to_have_text("审计日志")
    finally:
        context.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_operator_console_fits(
    chromium: Any, live_server: LiveServer, operator_account: OperatorAccount, width: int
) -> None:
    expect = _expect()
    phone = width < 600
    context = chromium.new_context(base_url=live_server.url, viewport={"width": width, "height": 800},
                                   locale="en", is_mobile=phone, has_touch=phone)
    try:
        page = context.new_page()
        page.goto("/platform/login")
        page.fill("#f-email", operator_account.email)
        page.fill("#f-password", operator_account.password)
        page.click("form.form button[type=submit]")
        expect(page).to_have_url(f"{live_server.url}/platform/tenants")
        for path in ("/platform/tenants", "/platform/plans", "/platform/plugins", "/platform/tenants/new"):
            page.goto(path)
            scroll = page.evaluate("document.scrollingElement.scrollWidth")
            assert scroll <= width, f"{path} scrolls sideways at {width}px ({scroll}px)"
            _inside(page, ".lang-switch, .me, [data-logout]", width)
        if phone:
            expect(page.locator(".nav")).to_be_hidden()
            page.click("[data-nav-toggle]")
            expect(page.locator(".nav")).to_be_visible()
        _inside(page, ".nav a", width)
    finally:
        context.close()
