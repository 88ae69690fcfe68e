"""Statements in headless Chromium: a GBK statement file with Chinese headers and title rows is uploaded,
its columns are preselected on the mapping step, imported (4 new lines), imported again (nothing doubled);
a file with bad rows shows each row's problem and stores nothing; a sandbox shop's statement is fetched."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from plugins import StatementLine
from plugins.builtin import sandbox_channel as sandbox
from tests.e2e.conftest import SCREENSHOTS, LiveServer, tenant_id_of
from tests.e2e.test_inventory_browser import owner_logs_in
from tests.integration.statements.helpers import FIXTURES, register_builtin, sandbox_account

pytestmark = pytest.mark.browser




def _upload(page: Any, account_id: uuid.UUID, name: str) -> None:
    page.goto("/console/statements")
    page.select_option("#u-account", str(account_id))
    page.set_input_files("#u-file", str(FIXTURES / name))
    page.locator("[data-statement-upload] button[type=submit]").click()


def test_statement_upload_mapping_report_and_fetch(page: Any, live_server: LiveServer, operator_account: Any) -> None:
    from playwright.sync_api import expect

    app = live_server.app
    register_builtin(app)
    slug = owner_logs_in(page, live_server, operator_account, "stmt-")
    tenant_id = tenant_id_of(live_server, slug)
    account_id = live_server.run(sandbox_account(app.state.kernel, tenant_id, page_size=2, name="抖音来客"))

    page.get_by_role("navigation").get_by_role("link", name="结算单").click()
    page.goto("/console/statements")
    expect(page.locator("h1")).to_have_text("对账单")
    expect(page.locator(".empty")).to_have_text("还没有对账单。")

    _upload(page, account_id, "locallife_gbk.csv")
    expect(page.locator("h1")).to_have_text("对账单列映射")
    expect(page.locator("[data-table=preview] thead th").first).to_have_text("账单流水号")
    expect(page.locator("[data-table=preview] tbody tr")).to_have_count(4)
    expect(page.locator("#m-order_id")).to_have_value("订单号")
    expect(page.locator("#m-amount")).to_have_value("金额(元)")
    expect(page.locator("#m-occurred_at")).to_have_value("入账时间")
    page.locator("[data-statement-mapping] button[type=submit]").click()

    expect(page.locator("[data-report=new]")).to_have_text("4")
    expect(page.locator("[data-table=statement-lines] tbody tr")).to_have_count(4)
    expect(page.locator("[data-line=LL0001] [data-amount]")).to_have_attribute("data-amount", "123450")
    expect(page.locator("[data-line=LL0001]")).to_contain_text("¥1,234.50")
    expect(page.locator("[data-line=LL0003]")).to_contain_text("退款")
    page.screenshot(path=str(SCREENSHOTS / "statements-report.png"), full_page=True)

    # the same file again: the saved mapping is preselected, and nothing is doubled
    _upload(page, account_id, "locallife_gbk.csv")
    expect(page.locator("#m-commission")).to_have_value("佣金(元)")
    page.locator("[data-statement-mapping] button[type=submit]").click()
    expect(page.locator("[data-report=new]")).to_have_text("0")
    expect(page.locator("[data-report=repeated]")).to_have_text("4")

    # bad rows: each named, nothing stored
    _upload(page, account_id, "bad_rows.csv")
    page.locator("[data-statement-mapping] button[type=submit]").click()
    expect(page.locator("h1")).to_have_text("对账单未导入")
    expect(page.locator("[data-refused]")).to_contain_text("未保存任何内容")
    expect(page.locator("[data-table=problems] tbody tr")).to_have_count(5)
    expect(page.locator("[data-table=problems] tr[data-row='2']")).to_contain_text("12.505")
    expect(page.locator("[data-code=repeated_in_file]")).to_contain_text("第 5 行")
    page.screenshot(path=str(SCREENSHOTS / "statements-refused.png"), full_page=True)

    # a mapping without the amount column: a readable message on the page
    _upload(page, account_id, "utf8_bom.csv")
    page.select_option("#m-amount", "")
    page.locator("[data-statement-mapping] button[type=submit]").click()
    expect(page.locator(".alert-error, [role=alert]").first).to_contain_text("订单号、金额和时间")

    # fetched from the sandbox shop, over several pages
    now = dt.datetime.now(dt.UTC)
    shop = sandbox.WORLD.shop(account_id)
    with sandbox.WORLD.lock:
        for i in range(3):
            shop.statement.append(StatementLine(line_id=f"SBX{i}", order_id=f"SO{i}", kind="sale",
                                                amount_fen=990 * (i + 1), commission_fen=99, occurred_at=now))
    page.goto("/console/statements")
    page.select_option("#f-account", str(account_id))
    today = now.date()
    page.fill("#f-start", (today - dt.timedelta(days=1)).isoformat())
    page.fill("#f-end", (today + dt.timedelta(days=1)).isoformat())
    page.locator("[data-statement-fetch] button[type=submit]").click()
    expect(page.locator("[data-report=new]")).to_have_text("3")
    expect(page.locator("[data-line=SBX2] [data-amount]")).to_have_attribute("data-amount", "2970")

    page.goto("/console/statements")
    expect(page.locator("[data-table=statements] tbody tr")).to_have_count(3)
