"""Connector accounts in headless Chromium: an owner connects a notifier from the form its config Struct
drives (the secret typed into a password input, never shown again), tests, pauses and resumes it, and
authorises a shop through the OAuth2 redirect flow against a local authorisation server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import unique
from tests.e2e.conftest import SCREENSHOTS, LiveServer, OperatorAccount
from tests.integration.connectors.conftest import (
    GOOD_KEY,
    PLUGIN_NAME,
    TestConnectorsPlugin,
    TokenServer,
    serve_tokens,
)

pytestmark = pytest.mark.browser


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


@pytest.fixture(scope="module")
def shop_tokens() -> Iterator[TokenServer]:
    with serve_tokens() as ts:
        yield ts


@pytest.fixture(scope="module")
def connector_owner(live_server: LiveServer, operator_account: OperatorAccount) -> str:
    """The test connectors on the server's plugin host; a tenant on a plan allowing them; its invite URL."""
    live_server.app.state.jobs.plugins.register(TestConnectorsPlugin(), name=PLUGIN_NAME)
    slug = unique("conn-")
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        r = http.post("/api/platform/v1/login", json={"email": operator_account.email, "password": operator_account.password})
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        plan = unique("all")
        r = http.post("/api/platform/v1/plans", json={"code": plan, "name": "All", "allowed_connectors": ["*"]},
                      headers=headers)
        assert r.status_code == 201, r.text
        body = {"name": f"Shop {slug}", "slug": slug, "owner_email": f"owner@{slug}.example.com", "plan": plan}
        r = http.post("/api/platform/v1/tenants", json=body, headers=headers)
        assert r.status_code == 201, r.text
        return str(r.json()["owner_invite_url"])


def test_owner_connects_tests_pauses_and_authorises_accounts(
    page: Any, live_server: LiveServer, connector_owner: str, shop_tokens: TokenServer
) -> None:
    expect = _expect()
    password = "owner-password-conn"
    page.goto(connector_owner)
    page.fill("#f-password", password)
    page.fill("#f-password_confirm", password)
    page.click("form.form button[type=submit]")
    page.fill("#f-password", password)
    page.click("form.form button[type=submit]")
    expect(page).to_have_url(f"{live_server.url}/console")

    page.get_by_role("navigation").get_by_role("link", name="连接器").click()
    expect(page.locator("h1")).to_have_text("连接器")
    expect(page.locator("[data-table=connector-accounts]")).to_have_count(0)
    page.locator('[data-connector="test_pager"]').get_by_role("link", name="连接").click()
    expect(page.locator("#f-config-api_key")).to_have_attribute("type", "password")
    expect(page.locator("#f-config-port")).to_have_attribute("type", "number")
    page.fill("#f-name", "短信主账户")
    page.fill("#f-config-api_key", GOOD_KEY)
    page.fill("#f-config-sender", "ACME")
    page.fill("#f-config-port", "8443")
    page.locator("[data-connect-form]").get_by_role("button", name="连接").click()

    expect(page.locator("h1")).to_have_text("短信主账户")
    expect(page.locator("[data-status]")).to_have_text("正常")
    expect(page.locator("#f-config-api_key")).to_have_value("")
    expect(page.locator("#f-config-api_key")).to_have_attribute("placeholder", "已设置——留空则保持不变")
    assert GOOD_KEY not in page.content()

    page.locator("[data-action=test]").click()
    expect(page.locator("[data-check]")).to_have_attribute("data-check", "ok")
    expect(page.locator("[data-check]")).to_contain_text("连接正常")
    page.locator("[data-action=pause]").click()
    expect(page.locator("[data-status]")).to_have_text("已暂停")
    page.locator("[data-action=resume]").click()
    expect(page.locator("[data-status]")).to_have_text("正常")
    expect(page.locator("[data-health]")).to_have_attribute("data-health", "ok")
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-connector-account.png"), full_page=True)

    # a shop authorised through the OAuth2 redirect flow
    page.goto("/console/connectors/new/test_shop")
    page.fill("#f-name", "测试店铺")
    page.fill("#f-config-shop_id", "shop-88")
    page.fill("#f-config-app_secret", "app-secret-e2e-1")
    page.fill("#f-config-base_url", shop_tokens.base_url)
    page.locator("[data-connect-form]").get_by_role("button", name="连接").click()
    expect(page.locator("[data-reason]")).to_have_text("等待店主授权")
    page.locator("[data-action=authorize]").click()
    expect(page).to_have_url(re.compile(r"/console/connectors/accounts/[0-9a-f-]{36}\?authorisation=done$"))
    expect(page.locator("[data-authorisation=done]")).to_have_text("店铺已授权。")
    expect(page.locator("[data-status]")).to_have_text("正常")
    expect(page.locator("[data-authorised]")).to_have_attribute("data-authorised", "yes")
    assert shop_tokens.requests[-1]["grant_type"] == ["authorization_code"]

    # disconnect the notifier (the confirm dialog is accepted)
    page.goto("/console/connectors")
    page.get_by_role("link", name="短信主账户").click()
    page.locator("[data-action=disconnect]").click()
    expect(page.locator("[data-status]")).to_have_text("已断开")
    expect(page.locator("[data-settings-form]")).to_have_count(0)
    page.goto("/console/connectors")
    expect(page.locator('tr[data-status="disconnected"]')).to_have_count(1)
    expect(page.locator('tr[data-status="active"]')).to_have_count(1)
