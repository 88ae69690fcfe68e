"""Catalog and inventory console pages in headless Chromium: create a product, import a supplier's file
through the wizard (column mapping detected, report, confirm, progress bar, batch), and the stock page
with a low-stock alert."""

from __future__ import annotations

import contextlib
import re
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import unique
from tests.e2e.conftest import SCREENSHOTS, LiveServer, OperatorAccount, onboard_via_api

pytestmark = pytest.mark.browser


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def owner_logs_in(page: Any, live_server: LiveServer, operator: OperatorAccount, prefix: str) -> str:
    """Onboard a tenant through the operator API; its owner sets a password and logs in. Returns the slug."""
    expect = _expect()
    slug = unique(prefix)
    password = "owner-password-stock"
    page.goto(onboard_via_api(live_server, operator, slug))
    page.fill("#f-password", password)
    page.fill("#f-password_confirm", password)
    page.click("form.form button[type=submit]")
    page.fill("#f-password", password)
    page.click("form.form button[type=submit]")
    expect(page).to_have_url(f"{live_server.url}/console")
    return slug


def create_product(
    page: Any, sku: str, name: str, *, threshold: str = "", code_format: str = "number_pin"
) -> None:
    """Fill the new-product form for a card-key product and land on its page."""
    expect = _expect()
    page.get_by_role("navigation").get_by_role("link", name="商品").click()
    page.locator("[data-new-product]").click()
    page.select_option("#f-kind", "code")
    page.select_option("#f-code_format", code_format)
    page.fill("#f-sku", sku)
    page.fill("#f-name_zh", name)
    page.fill("#f-face_value", "30")
    page.fill("#f-low_stock_threshold", threshold)
    page.get_by_role("button", name="创建商品").click()
    expect(page.locator("h1")).to_have_text(name)


@contextlib.contextmanager
def worker(live_server: LiveServer) -> Iterator[None]:
    """Service mode: a ``kaquan worker`` thread consumes the jobs the server's relay sends to Redis.
    Embedded mode: the server's in-process worker already does."""
    settings = live_server.app.state.kernel.settings
    if not settings.redis_url:
        yield
        return
    from core.jobs.worker import run_worker

    stop = threading.Event()
    thread = threading.Thread(
        target=run_worker, args=(settings,), kwargs={"threads": 2, "stop": stop}, daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(60)


def test_owner_creates_a_product(
    page: Any, live_server: LiveServer, operator_account: OperatorAccount
) -> None:
    expect = _expect()
    owner_logs_in(page, live_server, operator_account, "shop-")
    page.get_by_role("navigation").get_by_role("link", name="商品").click()
    expect(page.locator(".empty")).to_contain_text("还没有商品")
    page.locator("[data-new-product]").click()
    expect(page.locator("#f-currency")).to_have_value("CNY")

    # Fields follow the kind: uses per code only for reusable codes, bundle items only for bundles.
    expect(page.locator("#f-max_uses")).to_be_hidden()
    page.select_option("#f-kind", "reusable_code")
    expect(page.locator("#f-max_uses")).to_be_visible()
    page.select_option("#f-kind", "bundle")
    expect(page.locator("[data-table=items]")).to_be_visible()
    expect(page.locator("#f-code_format")).to_be_hidden()
    page.select_option("#f-kind", "code")
    expect(page.locator("#f-validity_date")).to_be_hidden()
    page.select_option("#f-validity_kind", "fixed_date")
    expect(page.locator("#f-validity_date")).to_be_visible()
    page.select_option("#f-validity_kind", "batch_expiry")

    sku = unique("TX-")
    page.select_option("#f-code_format", "number_pin")
    page.fill("#f-sku", sku)
    page.fill("#f-name_zh", "腾讯视频VIP月卡")
    page.fill("#f-name_en", "Tencent Video VIP monthly")
    page.fill("#f-brand", "腾讯视频")
    page.fill("#f-category", "视频会员")
    page.fill("#f-tags", "视频, 月卡")
    page.fill("#f-face_value", "19.999")
    page.select_option("#f-provenance", "official")
    page.fill("#f-low_stock_threshold", "20")
    page.get_by_role("button", name="创建商品").click()
    expect(page.locator("[data-problem]")).to_contain_text("最多两位小数")
    expect(page.locator("#f-name_zh")).to_have_value("腾讯视频VIP月卡")  # what was typed stays
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-product-error.png"), full_page=True)

    page.fill("#f-face_value", "19.90")
    page.get_by_role("button", name="创建商品").click()
    expect(page.locator(".alert-success")).to_contain_text(f"商品 {sku} 已创建")
    expect(page.locator("h1")).to_have_text("腾讯视频VIP月卡")
    expect(page.locator("[data-face-value]")).to_have_text("¥19.90")
    expect(page.locator("[data-import]")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-product.png"), full_page=True)

    page.click('[data-lang="en"]')
    expect(page.locator("h1")).to_have_text("Tencent Video VIP monthly")
    expect(page.locator("[data-props]")).to_contain_text("Official source")
    page.click('[data-lang="zh-CN"]')
    page.get_by_role("navigation").get_by_role("link", name="商品").click()
    expect(page.locator(f'tr[data-product="{sku}"]')).to_contain_text("¥19.90")


def test_import_wizard_progress_bar_and_batch(
    page: Any, live_server: LiveServer, operator_account: OperatorAccount
) -> None:
    expect = _expect()
    owner_logs_in(page, live_server, operator_account, "cards-")
    create_product(page, unique("IQ-"), "爱奇艺黄金月卡")
    page.locator("[data-import]").click()
    expect(page.locator("ol.steps [aria-current=step]")).to_have_text("上传")

    numbers = [f"IQ{secrets.token_hex(7).upper()}" for _ in range(12)]
    rows = [f"{n},pin{secrets.token_hex(4)},2031-12-31" for n in numbers] + [
        f"{numbers[0]},pinDup,",
        ",pinAlone,",
    ]
    data = ("卡号,卡密,有效期\r\n" + "\r\n".join(rows) + "\r\n").encode("gbk")
    page.wait_for_load_state()
    page.set_input_files("#f-file", {"name": "供应商十月.csv", "mimeType": "text/csv", "buffer": data})
    # The mapping is detected from the file as soon as it is chosen.
    expect(page.locator("#f-map_number")).to_have_value("0", timeout=15_000)
    expect(page.locator("#f-map_pin")).to_have_value("1")
    expect(page.locator("#f-map_expires_at")).to_have_value("2")
    expect(page.locator("#f-map_header")).to_have_value("yes")
    expect(page.locator("#f-map_number option:checked")).to_have_text("第 1 列 · 卡号")
    expect(page.locator("[data-preview-status]")).to_contain_text("GB18030")
    page.fill("#f-supplier", "华东数卡")
    page.fill("#f-unit_cost", "8.5")
    page.fill("#f-purchase_ref", "PO-1001")
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-import-upload.png"), full_page=True)
    page.get_by_role("button", name="校验卡密").click()

    expect(page.locator("ol.steps [aria-current=step]")).to_have_text("校验")
    expect(page.locator('[data-report="total"]')).to_have_text("14")
    expect(page.locator('[data-report="valid"]')).to_have_text("12")
    expect(page.locator('[data-report="invalid"]')).to_have_text("2")
    expect(page.locator('[data-report="cost"]')).to_have_text("¥102.00")
    expect(page.locator('[data-problem="duplicate_in_file"]')).to_contain_text("文件内重复")
    expect(page.locator("[data-table=problems] tbody tr")).to_have_count(2)
    content = page.content()
    assert not any(n in content for n in numbers), "a plaintext code is on the report page"
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-import-report.png"), full_page=True)

    page.get_by_role("button", name="确认导入").click()
    # The progress bar shows while the job is queued (the worker starts after it is seen in service mode).
    expect(page.locator("[role=progressbar]")).to_be_visible()
    expect(page.locator("ol.steps [aria-current=step]")).to_have_text("导入")
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-import-progress.png"), full_page=True)
    with worker(live_server):
        expect(page).to_have_url(re.compile(r"/console/batches/[0-9a-f-]{36}$"), timeout=60_000)
    expect(page.locator(".alert-success")).to_contain_text("已导入 12 个卡密")
    expect(page.locator('[data-level="available"]')).to_have_text("12")
    expect(page.locator("[data-unit-cost]")).to_have_text("¥8.50")
    expect(page.locator("[data-table=codes] tbody tr")).to_have_count(12)
    expect(page.locator("[data-masked]").first).to_have_text(re.compile(r"^•••• [0-9A-F]{4}$"))
    content = page.content()
    assert not any(n in content for n in numbers), "a plaintext code is on the batch page"
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-batch.png"), full_page=True)

    # Reveal one code: a reason first, then the plaintext once.
    page.locator("[data-reveal]").first.click()
    page.fill("#f-reason", "客服工单 8812：顾客未收到")
    page.locator("[data-reveal-submit]").click()
    revealed = page.locator('[data-secret="number"]').inner_text().strip()
    assert revealed in numbers


def test_stock_page_shows_a_low_stock_alert(
    page: Any, live_server: LiveServer, operator_account: OperatorAccount
) -> None:
    expect = _expect()
    owner_logs_in(page, live_server, operator_account, "alerts-")
    sku = unique("LOW-")
    create_product(page, sku, "星巴克中杯券", threshold="50", code_format="number")
    page.locator("[data-generate]").click()
    page.fill("#f-count", "30")
    page.fill("#f-prefix", "SB-")
    page.fill("#f-unit_cost", "12")
    with worker(live_server):
        page.locator("[data-generate-submit]").click()
        expect(page).to_have_url(re.compile(r"/console/batches/[0-9a-f-]{36}$"), timeout=60_000)
    expect(page.locator('[data-level="available"]')).to_have_text("30")

    page.get_by_role("navigation").get_by_role("link", name="库存").click()
    row = page.locator(f'tr[data-stock="{sku}"]')
    expect(row.locator('[data-state="available"]')).to_have_text("30")
    expect(row.locator("[data-value]")).to_have_text("¥360.00")
    expect(row.locator("[data-alert]")).to_have_count(0)
    page.locator("[data-check-alerts]").click()
    expect(page.locator(".alert-success")).to_contain_text("新增 1 条")
    expect(row.locator('[data-alert="low_stock"]')).to_have_text("库存不足")
    expect(page.locator(f'[data-alert-row="{sku}:low_stock"]')).to_contain_text("可用 30，阈值 50")
    expect(page.locator("[data-alert-count]")).to_have_text("1")
    page.screenshot(path=str(SCREENSHOTS / "kaquan-e2e-stock-alert.png"), full_page=True)
