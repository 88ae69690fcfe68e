"""The staff scan page in headless Chromium: the code input has the focus, a scanner gun types the code and
Enter, the PIN field appears and takes the focus, the result is big and green (or red, with when and where the
code was already redeemed), store and terminal are remembered, and a redemption is rolled back from the list."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from tests.e2e.conftest import SCREENSHOTS, LiveServer, OperatorAccount
from tests.e2e.test_inventory_browser import owner_logs_in
from tests.integration.redemption.helpers import issued_codes

pytestmark = pytest.mark.browser


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _tenant_id(live_server: LiveServer, slug: str) -> uuid.UUID:
    from tenants.models import Tenant

    async def find() -> uuid.UUID:
        async with live_server.app.state.kernel.db.transaction() as db:
            return (await db.execute(select(Tenant.id).where(Tenant.slug == slug))).scalar_one()

    return live_server.run(find())


def _scan(page: Any, text: str) -> None:
    """What a scanner gun does: type the characters into the focused field, then Enter."""
    page.keyboard.type(text, delay=5)
    page.keyboard.press("Enter")


def test_staff_scans_codes_and_rolls_back(
    page: Any, live_server: LiveServer, operator_account: OperatorAccount
) -> None:
    expect = _expect()
    slug = owner_logs_in(page, live_server, operator_account, "redeem-")
    tenant_id = _tenant_id(live_server, slug)
    kernel = live_server.app.state.kernel
    card = live_server.run(issued_codes(kernel, tenant_id, 1))  # number + PIN
    stored = live_server.run(issued_codes(kernel, tenant_id, 1, kind="stored_value", with_pin=False))

    page.get_by_role("navigation").get_by_role("link", name="核销", exact=True).click()
    expect(page.locator("#f-code")).to_be_focused()
    expect(page.locator("[data-result=idle]")).to_be_visible()
    page.fill("#f-store", "静安店")
    page.fill("#f-terminal", "POS-01")
    page.focus("#f-code")

    _scan(page, card.numbers[0].lower())
    expect(page.locator("[data-result=refused]")).to_have_attribute("data-problem-code", "pin_required")
    expect(page.locator("#f-pin")).to_be_focused()
    _scan(page, card.pins[0] or "")
    expect(page.locator("[data-result=ok]")).to_be_visible()
    expect(page.locator("[data-result=ok]")).to_contain_text(card.numbers[0][-4:])
    expect(page.locator("#f-code")).to_be_focused()  # ready for the next scan
    expect(page.locator("#f-code")).to_have_value("")
    expect(page.locator("#f-store")).to_have_value("静安店")  # remembered
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-redeem-ok.png"), full_page=True)

    _scan(page, card.numbers[0])
    page.fill("#f-pin", card.pins[0] or "")
    page.press("#f-pin", "Enter")
    refused = page.locator("[data-result=refused]")
    expect(refused).to_have_attribute("data-problem-code", "already_redeemed")
    expect(refused).to_contain_text("静安店 / POS-01")
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-redeem-refused.png"), full_page=True)

    page.focus("#f-code")
    _scan(page, stored.numbers[0])
    expect(page.locator("#f-amount")).to_be_focused()
    page.keyboard.type("12.50")  # more than the ¥10.00 on the card
    page.keyboard.press("Enter")
    expect(page.locator("[data-result=refused]")).to_have_attribute(
        "data-problem-code", "insufficient_balance"
    )
    page.fill("#f-amount", "7.50")
    page.press("#f-amount", "Enter")
    expect(page.locator("[data-result=ok] [data-balance]")).to_contain_text("¥2.50")

    row = page.locator("tr[data-redemption]").filter(has_text=card.numbers[0][-4:]).first
    row.locator("input[name=reason]").fill("顾客退单")
    row.locator("[data-rollback]").click()
    expect(page.locator(".alert-success")).to_be_visible()
    expect(
        page.locator("tr[data-redemption]")
        .filter(has_text=card.numbers[0][-4:])
        .first.locator("[data-rollback]")
    ).to_have_count(0)
