"""Stores and clerks in headless Chromium: the owner adds a store, invites a clerk (核销员) and assigns the
store; the clerk sets a password on a phone (390×844), logs in and lands on the redeem page with the store
pre-selected, redeems with the big input and button (no horizontal overflow), scans a QR code from a photo
(the page's decoder: BarcodeDetector or the vendored jsQR) and with the camera (Chromium's fake camera
playing a video of a QR code); the owner sees the redemptions per store and per clerk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, LiveServer, tenant_id_of
from tests.e2e.test_inventory_browser import owner_logs_in
from tests.integration.redemption.helpers import issued_codes

pytestmark = pytest.mark.browser
PHONE = {"width": 390, "height": 844}


def _qr_png(text: str, path: Path) -> Path:
    import segno

    segno.make_qr(text, error="m").save(str(path), scale=8, border=4)
    return path


def _qr_y4m(text: str, path: Path, size: int = 480) -> Path:
    """A short YUV4MPEG2 video of the QR code (black on white, centred) for Chromium's fake camera."""
    import segno

    matrix = [list(row) for row in segno.make_qr(text, error="m").matrix]
    n = len(matrix) + 8  # with a quiet zone of 4 modules
    scale = size * 3 // 4 // n
    offset = (size - n * scale) // 2
    luma = bytearray(b"\xff" * size * size)
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if dark:
                for dy in range(scale):
                    top = (offset + (y + 4) * scale + dy) * size + offset + (x + 4) * scale
                    luma[top : top + scale] = b"\x00" * scale
    chroma = b"\x80" * (size * size // 4)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{size} H{size} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(10):
            out.write(b"FRAME\n" + bytes(luma) + chroma + chroma)
    return path


def _no_overflow(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate(
        "[...document.querySelectorAll('body *')].filter(e => !e.closest('.table-wrap') && e.getBoundingClientRect().right > innerWidth + 1)"
        ".slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"
    )
    debug = page.evaluate(
        "[...document.querySelectorAll('.table-wrap, main, .card, body')].map(e => e.tagName + '.' + e.className + ' r='"
        " + Math.round(e.getBoundingClientRect().right) + ' sw=' + e.scrollWidth + ' ov=' + getComputedStyle(e).overflowX)"
    )
    assert width <= PHONE["width"], (
        f"the page is {width} px wide on a {PHONE['width']} px phone: {wide} {debug}"
    )


def _set_up(page: Any, live_server: LiveServer, operator_account: Any) -> tuple[str, str, list[str]]:
    """The owner adds a store, invites a clerk, assigns the store; returns (slug, invite url, codes)."""
    from playwright.sync_api import expect

    slug = owner_logs_in(page, live_server, operator_account, "stores-")
    page.goto("/console/stores")
    page.fill("[data-store-form] #f-code", "jA01")
    page.fill("[data-store-form] #f-name", "静安店")
    page.fill("[data-store-form] #f-city", "上海市")
    page.locator("[data-store-form] button[type=submit]").click()
    expect(page.locator('tr[data-store="JA01"]')).to_contain_text("静安店")
    page.goto("/console/users")
    page.fill("#f-email", f"clerk@{slug}.example.com")
    page.select_option("#f-role", "clerk")
    page.locator("form.form button[type=submit]").click()
    invite = page.locator('[data-secret="invite"]').inner_text()
    clerk_row = page.locator(f'[data-clerk-stores="clerk@{slug}.example.com"]')
    clerk_row.get_by_label("静安店").check()
    clerk_row.locator("[data-stores-save]").click()
    expect(
        page.locator(f'[data-clerk-stores="clerk@{slug}.example.com"] input[type=checkbox]')
    ).to_be_checked()
    tenant_id = tenant_id_of(live_server, slug)
    iss = live_server.run(issued_codes(live_server.app.state.kernel, tenant_id, 4, with_pin=False))
    return slug, invite, list(iss.numbers)


def _clerk_logs_in(page: Any, invite: str, slug: str) -> None:
    from playwright.sync_api import expect

    password = "clerk-password-1"
    page.goto(invite)
    page.fill("#f-password", password)
    page.fill("#f-password_confirm", password)
    page.click("form.form button[type=submit]")
    page.fill("#f-tenant", slug)
    page.fill("#f-password", password)
    page.click("form.form button[type=submit]")
    expect(page).to_have_url(page.url.split("/console")[0] + "/console/redeem")


def _redeem(page: Any) -> None:
    from playwright.sync_api import expect

    page.locator("[data-redeem]").click()
    expect(page.locator('[data-result="ok"]')).to_be_visible()
    expect(page.locator('[data-result="ok"]')).to_contain_text("已核销")


def test_clerk_redeems_and_scans_on_a_phone(
    chromium: Any, page: Any, live_server: LiveServer, operator_account: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    slug, invite, numbers = _set_up(page, live_server, operator_account)
    phone = chromium.new_context(base_url=live_server.url, viewport=PHONE, locale="zh-CN", is_mobile=True,
                                 has_touch=True)  # fmt: skip
    phone.set_default_timeout(15_000)
    clerk = phone.new_page()
    try:
        _clerk_logs_in(clerk, invite, slug)
        expect(clerk.locator("#f-store_id")).to_have_value(
            clerk.locator("#f-store_id option").first.get_attribute("value")
        )
        expect(clerk.locator("#f-store_id option")).to_have_count(1)
        code_input = clerk.locator("[data-code-input]")
        box, button = code_input.bounding_box(), clerk.locator("[data-redeem]").bounding_box()
        assert box and box["height"] >= 48 and box["width"] >= 300, box
        assert button and button["height"] >= 48 and button["width"] >= 300, button
        _no_overflow(clerk)

        code_input.fill(numbers[0])
        _redeem(clerk)
        _no_overflow(clerk)
        clerk.screenshot(path=str(SCREENSHOTS / "redeem-phone.png"), full_page=True)

        # a photo of the customer's QR: the scanned text fills the input unchanged, the clerk confirms
        clerk.locator("[data-scan-file]").set_input_files(str(_qr_png(numbers[1], tmp_path / "qr1.png")))
        expect(code_input).to_have_value(numbers[1])
        expect(clerk.locator("[data-scan-status]")).to_contain_text("已扫描")
        _redeem(clerk)
        # the same through the vendored jsQR (the path of browsers without BarcodeDetector)
        clerk.evaluate("window.kaquanScan.forceJsQR()")
        clerk.locator("[data-scan-file]").set_input_files(str(_qr_png(numbers[2], tmp_path / "qr2.png")))
        expect(code_input).to_have_value(numbers[2])
        assert clerk.evaluate("typeof window.jsQR") == "function"
        _redeem(clerk)
        # no camera in this context: a readable message, the manual input stays
        clerk.locator("[data-scan-start]").click()
        expect(clerk.locator("[data-scan-status]")).to_have_class("scan-status scan-status-bad")
        expect(code_input).to_be_editable()

        recent = clerk.locator('[data-table="redemptions"] tbody tr')
        expect(recent).to_have_count(3)
        expect(recent.first).to_contain_text("静安店")
    finally:
        phone.close()

    page.goto("/console/reports/redemptions")
    expect(page.locator('[data-table="by-store"] tr[data-row="JA01"] [data-count]')).to_have_text("3")
    expect(
        page.locator(f'[data-table="by-clerk"] tr[data-row="clerk@{slug}.example.com"] [data-count]')
    ).to_have_text("3")
    expect(page.locator('[data-table="by-store"] tr[data-row="JA01"] [data-value]')).to_have_text("¥30.00")
    page.screenshot(path=str(SCREENSHOTS / "redemption-report.png"), full_page=True)


def test_camera_scan_fills_the_code(
    chromium: Any, live_server: LiveServer, operator_account: Any, page: Any, tmp_path: Path
) -> None:
    """Chromium's fake camera plays a video of a QR code: the scan fills the code input."""
    from playwright.sync_api import expect

    slug, invite, numbers = _set_up(page, live_server, operator_account)
    video = _qr_y4m(numbers[3], tmp_path / "qr.y4m")
    args = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={video}",
            "--use-fake-ui-for-media-stream"]  # fmt: skip
    # a second Chromium (on the fixture's Playwright), with the fake camera
    browser = chromium.browser_type.launch(executable_path=CHROMIUM, args=args, headless=True)
    try:
        context = browser.new_context(base_url=live_server.url, viewport=PHONE, locale="zh-CN",
                                      permissions=["camera"])  # fmt: skip
        context.set_default_timeout(20_000)
        clerk = context.new_page()
        _clerk_logs_in(clerk, invite, slug)
        clerk.locator("[data-scan-start]").click()
        expect(clerk.locator("[data-code-input]")).to_have_value(numbers[3])
        expect(clerk.locator("[data-scan-status]")).to_contain_text("已扫描")
        _redeem(clerk)
    finally:
        browser.close()
