"""Split-rules console page in headless Chromium: start from the e-commerce preset, preview the rows of an
example line (in Chinese, money as ¥), be told (in Chinese) a minimum above the maximum, save the version and
see it in force for the channel account."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from core.connectors.models import ConnectorAccount
from core.db.context import tenant_context
from tenants.models import Tenant
from tests.e2e.conftest import SCREENSHOTS, LiveServer, OperatorAccount
from tests.e2e.test_inventory_browser import owner_logs_in

pytestmark = pytest.mark.browser


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _account(live_server: LiveServer, slug: str) -> uuid.UUID:
    kernel = live_server.app.state.kernel

    async def make() -> uuid.UUID:
        async with kernel.db.transaction() as db:
            tenant_id = (await db.execute(select(Tenant.id).where(Tenant.slug == slug))).scalar_one()
        with tenant_context(tenant_id):
            async with kernel.db.transaction() as db:
                account = ConnectorAccount(connector_id="ecommerce", kind="sales_channel", name="天猫旗舰店",
                                           status="active", config={})
                db.add(account)
                await db.flush()
                return account.id

    return live_server.run(make())


def test_owner_previews_and_saves_a_split_rule(
    page: Any, live_server: LiveServer, operator_account: OperatorAccount
) -> None:
    expect = _expect()
    slug = owner_logs_in(page, live_server, operator_account, "split-")
    account_id = _account(live_server, slug)

    page.goto(f"{live_server.url}/console/split-rules")
    expect(page.locator("nav.tabs [aria-current=page]")).to_have_text("分账规则")
    expect(page.locator("[data-section=subjects] .empty")).to_contain_text("尚无分账规则")
    page.locator("[data-preset=sale_15]").click()
    expect(page.locator("input[name=c0_pct]")).to_have_value("15.00")
    page.select_option("#f-subject", f"account:{account_id}")
    page.fill("#f-ex-gross", "29.99")
    page.fill("#f-ex-qty", "3")
    page.locator("[data-preview]").click()
    sale = page.locator("[data-table=preview-1]")
    expect(sale.locator("[data-row-party=channel]")).to_contain_text("¥4.49")
    expect(sale.locator("[data-row-party=tenant]")).to_contain_text("¥25.50")
    expect(page.locator("[data-balance-party=tenant]").last).to_contain_text("¥0.00")
    page.screenshot(path=str(SCREENSHOTS / "splits-preview.png"), full_page=True)

    page.fill("input[name=c0_min]", "9")
    page.fill("input[name=c0_max]", "1")
    page.locator("[data-save-rule]").click()
    expect(page.locator("[data-problem]")).to_contain_text("下限高于上限")
    expect(page.locator("input[name=c0_pct]")).to_have_value("15.00")  # the form keeps what was typed

    page.fill("input[name=c0_min]", "")
    page.fill("input[name=c0_max]", "")
    page.fill("#f-note", "双十一")
    page.locator("[data-save-rule]").click()
    row = page.locator(f"[data-subject='account:{account_id}']")
    expect(row).to_contain_text("天猫旗舰店")
    expect(row.locator("[data-version]")).to_have_text("v1")
    expect(row.locator("[data-component]").first).to_contain_text("15.00%")
    expect(page.locator(".alert, .flash").first).to_contain_text("第 1 版")
