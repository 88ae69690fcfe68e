"""Distribution in headless Chromium: a bulk grant from a GBK recipient file (report with a bad row, confirm,
progress bar to done, per-row result download, the same file again grants nothing twice), then the expiry
reminders page (setting with a readable error, the reminders sent to the bulk-granted members)."""

from __future__ import annotations

import csv
import io
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import unique
from tests.e2e.conftest import SCREENSHOTS, LiveServer, OperatorAccount
from tests.e2e.test_inventory_browser import owner_logs_in, worker

pytestmark = pytest.mark.browser

SHOW = re.compile(r"/console/bulk-grants/[0-9a-f-]{36}$")
MASKED_CODE = re.compile(r"^•••• [0-9A-Z*~$=-]{4}$")  # Crockford symbols, group dashes, check symbol
FULL_BAR = """() => {
  const bar = document.querySelector("[role=progressbar]");
  const label = document.querySelector("[data-progress-label]");
  return bar !== null && bar.getAttribute("aria-valuenow") === "100" && label.textContent === "已完成";
}"""
RESULT_HEADER = [
    "行号",
    "姓名",
    "联系方式",
    "商品编码",
    "数量",
    "结果",
    "发放单号",
    "卡券（掩码）",
    "错误",
    "error_code",
]


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def mobile() -> str:
    return f"13{secrets.randbelow(10)}{secrets.randbelow(10**8):08d}"


def masked(number: str) -> str:
    return f"{number[:3]}****{number[-4:]}"


def stocked_product(page: Any, live_server: LiveServer, sku: str, name: str, codes: int) -> None:
    """A card-key product valid 5 days after it is granted, with ``codes`` generated codes."""
    expect = _expect()
    page.get_by_role("navigation").get_by_role("link", name="商品").click()
    page.locator("[data-new-product]").click()
    page.select_option("#f-kind", "code")
    page.select_option("#f-code_format", "number")
    page.fill("#f-sku", sku)
    page.fill("#f-name_zh", name)
    page.fill("#f-face_value", "50")
    page.select_option("#f-validity_kind", "days_after_issue")
    page.fill("#f-validity_days", "5")
    page.get_by_role("button", name="创建商品").click()
    expect(page.locator("h1")).to_have_text(name)
    page.locator("[data-generate]").click()
    page.fill("#f-count", str(codes))
    page.fill("#f-unit_cost", "40")
    with worker(live_server):
        page.locator("[data-generate-submit]").click()
        expect(page).to_have_url(re.compile(r"/console/batches/[0-9a-f-]{36}$"), timeout=60_000)
    expect(page.locator('[data-level="available"]')).to_have_text(str(codes))


def upload(page: Any, data: bytes, campaign: str) -> None:
    """Upload the recipient file from the bulk-grant page and land on its report."""
    expect = _expect()
    page.get_by_role("navigation").get_by_role("link", name="批量发放").click()
    page.set_input_files("#f-file", {"name": "中秋福利名单.csv", "mimeType": "text/csv", "buffer": data})
    page.fill("#f-campaign_ref", campaign)
    page.select_option("#f-channel", "none")
    page.get_by_role("button", name="上传并校验").click()
    expect(page).to_have_url(SHOW)


def download_results(page: Any) -> list[list[str]]:
    """Click the result download; the file's rows (UTF-8 with BOM, as Excel wants)."""
    with page.expect_download() as info:
        page.locator("[data-download-results]").click()
    download = info.value
    assert re.fullmatch(r"bulk-grant-[0-9a-f-]{36}\.csv", download.suggested_filename)
    raw = Path(download.path()).read_bytes()
    assert raw.startswith("\ufeff".encode())
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))


def tenant_id_of(live_server: LiveServer, slug: str) -> Any:
    from tenants.models import Tenant

    async def find() -> Any:
        async with live_server.app.state.kernel.db.transaction() as db:
            return (await db.execute(select(Tenant.id).where(Tenant.slug == slug))).scalar_one()

    return live_server.run(find())


def run_reminders_now(live_server: LiveServer, tenant_id: Any) -> Any:
    """What the hourly ``remind_expiring_codes`` job does for one tenant (there is no "run now" button)."""
    from core.db.context import tenant_context
    from core.reminders.services import run_reminders

    async def go() -> Any:
        with tenant_context(tenant_id):
            return await run_reminders(live_server.app.state.kernel.db)

    return live_server.run(go())


def test_bulk_grant_from_a_gbk_file_then_expiry_reminders(
    page: Any, live_server: LiveServer, operator_account: OperatorAccount
) -> None:
    expect = _expect()
    slug = owner_logs_in(page, live_server, operator_account, "welfare-")
    sku = unique("WF-").upper()
    stocked_product(page, live_server, sku, "员工福利京东卡", 20)

    people = {"张三": mobile(), "王五": mobile(), "赵六": mobile()}
    staff = {f"员工{i:02d}": mobile() for i in range(1, 13)}  # the job outlasts the page load
    rows = [
        ("张三", people["张三"], sku, "1"),
        ("李四", "12345", sku, "1"),  # not a mobile number: reported, never granted
        ("王五", people["王五"], sku, "2"),
        ("赵六", people["赵六"], sku, ""),  # empty quantity means 1
        *((name, number, sku, "1") for name, number in staff.items()),
    ]
    data = ("姓名,手机号,商品编码,数量\r\n" + "".join(",".join(r) + "\r\n" for r in rows)).encode("gbk")
    campaign = "2026 中秋福利"

    # Upload → the check, with the bad row and its problem; nothing granted yet.
    upload(page, data, campaign)
    expect(page.locator("[data-bulk-status]")).to_have_attribute("data-bulk-status", "validated")
    expect(page.locator(".page-head .muted")).to_contain_text("CSV · GB18030")
    expect(page.locator('[data-report="total"]')).to_have_text("16")
    expect(page.locator('[data-report="valid"]')).to_have_text("15")
    expect(page.locator('[data-report="invalid"]')).to_have_text("1")
    expect(page.locator('[data-report="already"]')).to_have_text("0")
    expect(page.locator('[data-problem="bad_phone"]')).to_contain_text("不是有效的中国大陆手机号: 1")
    bad_row = page.locator("[data-table=problems] tbody tr")
    expect(bad_row).to_have_count(1)
    expect(bad_row).to_have_attribute("data-row", "3")  # the file's line: the header is line 1
    expect(bad_row).to_contain_text("不是有效的中国大陆手机号")
    product_row = page.locator(f'[data-table=products] tr[data-sku="{sku}"]')
    expect(product_row.locator("td").nth(3)).to_have_text("16")  # units asked for
    expect(product_row.locator("td").nth(4)).to_have_text("20")  # in stock
    content = page.content()
    phones = [*people.values(), *staff.values()]
    assert not any(n in content for n in phones), "a phone number is on the report page"
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-bulk-report.png"), full_page=True)

    # Confirm → the progress bar, polled until done, then the counts.
    polled: list[dict[str, Any]] = []
    page.on("response", lambda r: polled.append(r.json()) if r.url.endswith("/progress") else None)
    page.get_by_role("button", name="确认批量发放").click()
    expect(page.locator("[role=progressbar]")).to_be_visible()
    expect(page.locator("[data-progress-count]")).to_contain_text("/ 15")
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-bulk-progress.png"), full_page=True)
    with worker(live_server):
        # Checked every animation frame: the full bar shows for a moment before the page reloads.
        page.wait_for_function(FULL_BAR, timeout=60_000)
        expect(page.locator("[data-results]")).to_be_visible(timeout=30_000)
    assert polled[0]["status"] in ("queued", "running") and not polled[0]["finished"]
    assert {k: polled[-1][k] for k in ("status", "done", "total", "percent", "finished")} == {
        "status": "done",
        "done": 15,
        "total": 15,
        "percent": 100.0,
        "finished": True,
    }
    expect(page.locator("[data-bulk-status]")).to_have_attribute("data-bulk-status", "done")
    expect(page.locator('[data-count="granted"]')).to_have_text("15")
    expect(page.locator('[data-count="failed"]')).to_have_text("0")
    expect(page.locator('[data-count="already_granted"]')).to_have_text("0")
    expect(page.locator('[data-count="invalid"]')).to_have_text("1")
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-bulk-done.png"), full_page=True)

    # The per-row result: every line of the file, masked contacts and codes, the bad row with its code.
    result = download_results(page)
    assert result[0] == RESULT_HEADER
    body = {r[1]: r for r in result[1:]}
    assert [r[0] for r in result[1:]] == [str(n) for n in range(2, 18)]
    refs = {}
    contacts = {**people, **staff}
    for name, count in (("张三", 1), ("王五", 2), ("赵六", 1), *((n, 1) for n in staff)):
        line = body[name]
        assert line[2] == masked(contacts[name]) and line[3] == sku and line[4] == str(count)
        assert line[5] == "已发放" and line[6] and line[8] == line[9] == ""
        codes = line[7].split("; ")
        assert len(codes) == count and all(MASKED_CODE.match(c) for c in codes), line
        refs[name] = line[6]
    assert (
        body["李四"][5] == "未发放（数据有误）"
        and body["李四"][6] == ""
        and body["李四"][8] == "不是有效的中国大陆手机号"  # the console's words
        and body["李四"][9] == "bad_phone"
    )
    raw = "\n".join(",".join(r) for r in result)
    assert not any(n in raw for n in phones), "a phone number is in the result file"

    # The same file again: every good row was granted before; nothing can be confirmed.
    upload(page, data, campaign)
    expect(page.locator('[data-report="total"]')).to_have_text("16")
    expect(page.locator('[data-report="valid"]')).to_have_text("0")
    expect(page.locator('[data-report="already"]')).to_have_text("15")
    expect(page.locator('[data-report="invalid"]')).to_have_text("1")
    expect(page.locator(".alert-error")).to_contain_text("没有可发放的行。")
    expect(page.locator("[data-confirm-bulk]")).to_have_count(0)
    again = download_results(page)
    for name in contacts:
        line = next(r for r in again[1:] if r[1] == name)
        assert line[5] == "已发放过" and line[6] == refs[name], line  # the first run's grant
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-bulk-again.png"), full_page=True)
    page.get_by_role("navigation").get_by_role("link", name="发放记录").click()
    expect(page.locator("tr[data-grant]")).to_have_count(15)  # fifteen grants, not thirty

    # Expiry reminders: a readable error, the new window saved, then the hourly run reminds the members.
    page.get_by_role("navigation").get_by_role("link", name="到期提醒").click()
    expect(page.locator("h1")).to_have_text("到期提醒")
    expect(page.locator("#f-days_before")).to_have_value("3")
    expect(page.locator("#f-enabled")).to_be_checked()
    expect(page.locator(".empty")).to_contain_text("还没有发送过提醒")
    page.fill("#f-days_before", "0")
    page.locator("[data-save-reminders]").click()
    expect(page.locator("[data-problem]")).to_have_text("请输入 1 到 90 之间的整数天数。")
    expect(page.locator("#f-days_before")).to_have_value("0")
    expect(page.locator("#f-days_before")).to_have_attribute("aria-invalid", "true")
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-reminders-error.png"), full_page=True)
    page.fill("#f-days_before", "7")
    page.locator("[data-save-reminders]").click()
    expect(page.locator(".alert-success")).to_contain_text("已保存：会员将在卡券到期前 7 天收到提醒")
    expect(page.locator("[data-reminders-state]")).to_have_text("已开启：到期前 7 天提醒")

    run = run_reminders_now(live_server, tenant_id_of(live_server, slug))
    assert (run.members_reminded, run.items_reminded) == (15, 16)  # the codes expire in 5 days
    page.reload()
    table = page.locator("[data-table=reminders] tbody tr")
    expect(table).to_have_count(16)
    for name in people:
        row = table.filter(has_text=name)
        expect(row.first.locator("[data-contact]")).to_contain_text(masked(people[name]))
        expect(row.first).to_contain_text("员工福利京东卡")
        expect(row.first.locator("[data-item-status]")).to_have_text("持有中")
    expect(table.filter(has_text="王五")).to_have_count(2)
    expect(table.first.locator("[data-expires]")).to_have_text(re.compile(r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2})?$"))
    content = page.content()
    assert not any(n in content for n in phones), "a phone number is on the reminders page"
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-reminders.png"), full_page=True)
