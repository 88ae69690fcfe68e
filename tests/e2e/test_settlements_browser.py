"""Settlements in headless Chromium: the 结算对账 nav item lands on the settlements list; a settlement's
page shows totals and lines; confirming without reconciliation is refused with a readable message, then
forced with a reason; the payment is recorded; the XLSX export downloads."""

from __future__ import annotations

import io
from typing import Any

import pytest
from openpyxl import load_workbook

from tests.e2e.conftest import SCREENSHOTS, LiveServer, tenant_id_of
from tests.e2e.test_inventory_browser import owner_logs_in
from tests.integration.channel_orders.fake_channel import connect_account
from tests.integration.settlements.scenario import seed_month

pytestmark = pytest.mark.browser




def test_settlement_confirm_pay_and_export_in_the_console(page: Any, live_server: LiveServer,
                                                          operator_account: Any) -> None:
    from playwright.sync_api import expect

    slug = owner_logs_in(page, live_server, operator_account, "settle-")
    tenant_id = tenant_id_of(live_server, slug)
    kernel = live_server.app.state.kernel

    async def setup() -> Any:
        shop = await connect_account(kernel, tenant_id, name="美团门店")
        return await seed_month(kernel, tenant_id, shop.account_id)

    month = live_server.run(setup())
    page.get_by_role("navigation").get_by_role("link", name="结算单").click()
    expect(page).to_have_url(f"{live_server.url}/console/settlements")
    row = page.locator(f'[data-settlement="{month.account_id}/{month.period}"]')
    expect(row).to_contain_text("美团门店")
    expect(row.locator("[data-net]")).to_have_text("¥91.00")
    page.screenshot(path=str(SCREENSHOTS / "settlement-list.png"), full_page=True)
    row.get_by_role("link", name=month.period).click()

    expect(page.locator('[data-total="gross"]')).to_have_text("¥150.00")
    expect(page.locator('[data-total="net_due"]')).to_have_text("¥91.00")
    expect(page.locator('[data-line="ORD-1/L1"]')).to_contain_text("SKU-1")
    page.locator("[data-confirm-form] button[type=submit]").click()
    expect(page.locator("[data-problem]")).to_contain_text("尚未对账")
    page.locator("[data-confirm-form] input[name=force]").check()
    page.fill("#f-reason", "渠道未提供账单，财务核对银行流水")
    page.locator("[data-confirm-form] button[type=submit]").click()
    expect(page.locator("[data-settlement-status]")).to_have_text("已确认")

    page.fill("#f-payment_ref", "BANK-20261105")
    page.get_by_role("button", name="登记付款").click()
    expect(page.locator("[data-settlement-status]")).to_have_text("已付款")
    expect(page.locator("[data-payment-ref]")).to_have_text("BANK-20261105")
    page.screenshot(path=str(SCREENSHOTS / "settlement-detail.png"), full_page=True)

    with page.expect_download() as info:
        page.locator("[data-export]").click()
    path = info.value.path()
    with open(path, "rb") as fh:
        book = load_workbook(io.BytesIO(fh.read()), read_only=True)
    summary = {r[0]: r[1] for r in book["Summary"].iter_rows(min_row=2, values_only=True)}
    assert summary["Net due (fen) / 应收（分）"] == 9_100 and summary["Status / 状态"] == "paid"
