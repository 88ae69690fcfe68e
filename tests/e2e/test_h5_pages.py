"""The member H5 pages in headless Chromium at a phone viewport (390x844): open a claim link, confirm the
phone with the one-time code, see the code with its QR code, then "my codes" and the transfer form."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.claims.otp import SMS_ACTOR, open_sms
from core.db.context import tenant_context
from core.jobs.models import OutboxMessage
from tests.conftest import unique
from tests.e2e.conftest import SCREENSHOTS, LiveServer, OperatorAccount
from tests.integration.inventory.stocking import stock_product

pytestmark = pytest.mark.browser
PHONE_VIEWPORT = {"width": 390, "height": 844}


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


@pytest.fixture
def phone_page(chromium: Any, live_server: LiveServer) -> Iterator[Any]:
    """A fresh mobile browser context: iPhone-sized, touch, Chinese."""
    context = chromium.new_context(
        base_url=live_server.url,
        viewport=PHONE_VIEWPORT,
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
        device_scale_factor=2,
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def _shop_with_link(live_server: LiveServer, operator: OperatorAccount) -> tuple[uuid.UUID, str, list[str]]:
    """A tenant (operator API), an API client, stock, a grant and its claim link; returns
    (tenant id, link path, numbers in stock)."""
    from tenants.clients import create_client
    from tenants.scopes import SCOPES

    slug = unique("h5-")
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        r = http.post("/api/platform/v1/login", json={"email": operator.email, "password": operator.password})
        r.raise_for_status()
        op = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = http.post(
            "/api/platform/v1/tenants",
            headers=op,
            json={"name": f"咖啡店 {slug}", "slug": slug, "owner_email": f"owner@{slug}.example.com"},
        )
        r.raise_for_status()
        tenant_id = uuid.UUID(r.json()["tenant"]["id"])
        kernel = live_server.app.state.kernel

        async def make_client() -> tuple[str, str]:
            with tenant_context(tenant_id):
                async with kernel.db.transaction() as db:
                    row, secret = await create_client(db, unique("h5-client-"), sorted(SCOPES))
                    return row.client_id, secret

        client_id, secret = live_server.run(make_client())
        r = http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
        r.raise_for_status()
        api = {"Authorization": f"Bearer {r.json()['access_token']}"}
        stocked = live_server.run(
            stock_product(kernel, tenant_id, 2, usage_rules="门店出示二维码即可兑换一杯咖啡")
        )
        r = http.post(
            "/api/v1/grants",
            headers={**api, "Idempotency-Key": secrets.token_hex(8)},
            json={"product_id": str(stocked.product_id), "external_id": unique("m-"), "channel": "none"},
        )
        assert r.status_code == 201, r.text
        r = http.post(f"/api/v1/grants/{r.json()['id']}/claim-link", headers=api)
        assert r.status_code == 201, r.text
        return tenant_id, r.json()["path"], stocked.numbers


def _otp(live_server: LiveServer, tenant_id: uuid.UUID) -> str:
    kernel = live_server.app.state.kernel

    async def read() -> str:
        with tenant_context(tenant_id):
            async with kernel.db.transaction() as db:
                rows = (
                    (
                        await db.execute(
                            select(OutboxMessage)
                            .where(OutboxMessage.actor == SMS_ACTOR)
                            .order_by(OutboxMessage.id)
                        )
                    )
                    .scalars()
                    .all()
                )
                _to, body = open_sms(await kernel.keys.cipher(db), rows[-1].payload)
                match = re.search(r"验证码为 (\d{6})", body)
                assert match, "the last SMS carries a one-time code"
                return match.group(1)

    return live_server.run(read())


def _fits_the_screen(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE_VIEWPORT["width"], f"the page scrolls sideways ({width}px)"


def test_claim_otp_code_page_and_my_codes(
    phone_page: Any, live_server: LiveServer, operator_account: OperatorAccount
) -> None:
    expect = _expect()
    page = phone_page
    tenant_id, link_path, numbers = _shop_with_link(live_server, operator_account)

    page.goto(link_path)
    expect(page.locator("h1")).to_have_text("领取券码")
    _fits_the_screen(page)
    page.fill("#phone", "139 1234 5678")
    page.check("[data-consent]")
    page.get_by_role("button", name="获取验证码").click()
    expect(page.locator("[data-sent-to]")).to_have_text("139****5678")
    page.fill("#code", _otp(live_server, tenant_id))
    page.get_by_role("button", name="验证并领取").click()

    number = page.locator("[data-number]")
    expect(number).to_be_visible()
    assert number.inner_text() in numbers
    expect(page.locator("[data-pin]")).to_be_visible()
    qr = page.locator(".qr svg")
    expect(qr).to_be_visible()
    box = qr.bounding_box()
    assert box and 150 <= box["width"] <= 390 and abs(box["width"] - box["height"]) < 2, box
    expect(page.get_by_text("门店出示二维码即可兑换一杯咖啡")).to_be_visible()
    expect(page.locator("[data-face-value]")).to_have_text("¥10.00")  # not "1000 CNY"
    expect(page.get_by_role("button", name="确认转赠")).to_be_hidden()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="复制卡号").click()
    expect(page.get_by_role("button", name="复制卡号")).to_have_text("已复制")
    assert page.evaluate("navigator.clipboard.readText()") == number.inner_text()
    page.get_by_role("button", name="复制卡密").click()
    assert page.evaluate("navigator.clipboard.readText()") == page.locator("[data-pin]").inner_text()
    _fits_the_screen(page)
    page.screenshot(path=str(SCREENSHOTS / "kaquan-h5-code.png"), full_page=True)

    cookies = {c["name"]: c for c in page.context.cookies()}
    member = cookies["kq_member"]
    assert member["httpOnly"] and member["sameSite"] == "Lax" and member["path"] == "/h5"

    page.get_by_role("link", name="我的券").click()
    expect(page.locator("h1")).to_have_text("我的券")
    rows = page.locator("[data-my-codes] li")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".chip")).to_have_text("可使用")
    _fits_the_screen(page)
    page.screenshot(path=str(SCREENSHOTS / "kaquan-h5-me.png"), full_page=True)

    rows.first.locator("a").click()
    # transfer is a deliberate second step: collapsed under the code until asked for
    expect(page.locator("#to-phone")).to_be_hidden()
    page.locator("[data-transfer-open]").click()
    expect(page.locator("#to-phone")).to_be_visible()
    page.fill("#to-phone", "13800001111")
    page.get_by_role("button", name="确认转赠").click()
    expect(page.locator("[data-transfer-done]")).to_contain_text("138****1111")
    page.get_by_role("link", name="返回我的券").click()
    expect(page.locator("[data-empty]")).to_be_visible()


def test_my_codes_sign_in_by_phone_with_consent_and_countdown(
    phone_page: Any, live_server: LiveServer, operator_account: OperatorAccount
) -> None:
    """Without a session, "my codes" of a known shop offers phone + one-time code (consent required);
    during the resend cooldown the code box stays usable with a countdown."""
    expect = _expect()
    page = phone_page
    tenant_id, link_path, _numbers = _shop_with_link(live_server, operator_account)
    page.goto(link_path)  # a claimed code, so the phone belongs to a member of this shop
    page.fill("#phone", "139 2222 3333")
    page.check("[data-consent]")
    page.get_by_role("button", name="获取验证码").click()
    page.fill("#code", _otp(live_server, tenant_id))
    page.get_by_role("button", name="验证并领取").click()
    expect(page.locator("[data-number]")).to_be_visible()
    page.context.clear_cookies(name="kq_member")  # a new visit: the shop is remembered, the session is not

    page.goto("/h5/me")
    expect(page.locator("h1")).to_have_text("登录查看我的券")
    _fits_the_screen(page)
    page.fill("#phone", "13922223333")
    page.get_by_role("button", name="获取验证码").click()
    expect(page.locator("[data-consent]:invalid")).to_have_count(1)  # the consent box is required first
    page.check("[data-consent]")
    page.get_by_role("button", name="获取验证码").click()
    expect(page.locator("[data-login-sent]")).to_contain_text("139****3333")
    expect(page.locator("[data-cooldown]")).to_contain_text("秒后可重发")
    expect(page.locator(".resend button")).to_be_disabled()
    _fits_the_screen(page)
    page.screenshot(path=str(SCREENSHOTS / "kaquan-h5-login.png"), full_page=True)
    page.fill("#code", _otp(live_server, tenant_id))
    page.get_by_role("button", name="登录").click()
    expect(page.locator("[data-my-codes] li")).to_have_count(1)
