"""Listings console pages in headless Chromium: list a product on a channel account, see the quota bar and
price, be refused (in Chinese) a floor above the ceiling and a quota above the stock, change the price and
see the history, pause the listing."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from core.connectors.models import ConnectorAccount
from core.db.context import tenant_context
from tenants.models import Tenant
from tests.e2e.conftest import SCREENSHOTS, LiveServer, OperatorAccount
from tests.e2e.test_inventory_browser import owner_logs_in
from tests.integration.inventory.stocking import stock_product

pytestmark = pytest.mark.browser


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _stock_and_account(live_server: LiveServer, slug: str) -> tuple[uuid.UUID, uuid.UUID]:
    kernel = live_server.app.state.kernel

    async def make() -> tuple[uuid.UUID, uuid.UUID]:
        async with kernel.db.transaction() as db:
            tenant_id = (await db.execute(select(Tenant.id).where(Tenant.slug == slug))).scalar_one()
        stocked = await stock_product(kernel, tenant_id, 10)
        with tenant_context(tenant_id):
            async with kernel.db.transaction() as db:
                account = ConnectorAccount(connector_id="sandbox", kind="sales_channel", name="抖音小店",
                                           status="active", config={})
                db.add(account)
                await db.flush()
                return stocked.product_id, account.id

    return live_server.run(make())


def test_owner_lists_a_product_and_manages_it(
    page: Any, live_server: LiveServer, operator_account: OperatorAccount
) -> None:
    expect = _expect()
    slug = owner_logs_in(page, live_server, operator_account, "chan-")
    product_id, account_id = _stock_and_account(live_server, slug)

    page.get_by_role("navigation").get_by_role("link", name="渠道铺货").click()
    expect(page.locator(".empty")).to_contain_text("暂无渠道商品")
    page.select_option("#f-account_id", str(account_id))
    page.select_option("#f-product_id", str(product_id))
    page.fill("#f-sku", "DY-SKU-1")
    page.fill("#f-title", "超市购物卡 100 元")
    page.fill("#f-price", "95.00")
    page.fill("#f-quota_value", "11")
    page.locator("[data-create-listing]").click()
    expect(page.locator("[data-problem]")).to_contain_text("超过可用库存")  # 11 > 10 in stock
    expect(page.locator("#f-sku")).to_have_value("DY-SKU-1")  # the form keeps what was typed

    page.fill("#f-quota_value", "8")
    page.fill("#f-floor", "99")
    page.fill("#f-ceiling", "90")
    page.locator("[data-create-listing]").click()
    expect(page.locator("[data-problem]")).to_contain_text("最低价")
    page.fill("#f-floor", "")
    page.fill("#f-ceiling", "")
    page.locator("[data-create-listing]").click()

    expect(page.locator("h1")).to_have_text("超市购物卡 100 元")
    expect(page.locator("[data-section=state] [data-price]")).to_have_text("¥95.00")
    expect(page.locator("[data-section=state] [data-quota]")).to_have_text("8")
    expect(page.locator("[data-section=state] [data-sync]")).to_have_text("等待同步")
    expect(page.locator("[data-table=prices] tbody tr")).to_have_count(1)

    page.fill("#f-price", "92.50")
    page.locator("[data-save-listing]").click()
    expect(page.locator("[data-section=state] [data-price]")).to_have_text("¥92.50")
    expect(page.locator("[data-table=prices] tbody tr")).to_have_count(2)
    expect(page.locator("[data-table=prices] tbody tr").first.locator("[data-reason]")).to_contain_text("手动修改")

    page.locator("[data-pause]").click()
    expect(page.locator(".page-head [data-status]")).to_have_text("已暂停")
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-listing.png"), full_page=True)

    page.get_by_role("navigation").get_by_role("link", name="渠道铺货").click()
    row = page.locator("[data-table=listings] tr[data-sku='DY-SKU-1']")
    expect(row).to_have_count(1)
    expect(row.locator("[data-quota-bar]")).to_be_visible()
    expect(row.locator("[data-price]")).to_have_text("¥92.50")
    sync = page.locator(f"[data-table=sync] tr[data-account='{account_id}']")
    # 1 waiting for the push, or 0 when the in-process worker has pushed it already
    expect(sync.locator("[data-pending]")).to_have_text(re.compile(r"^[01]$"))
    expect(sync.locator("[data-drifting]")).to_have_text("0")
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-listings.png"), full_page=True)
