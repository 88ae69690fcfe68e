"""The overview (数据概览) in headless Chromium at 1280×800 and on a phone (390×844): a new tenant sees the next
steps; with the KPI scenario's sales and stock it sees the figures as links and the server-drawn SVG trends
(one point per day and series), switches to 30 days, and nothing in the page's content is wider than the
screen. The operator console shows the plan's name and the operator's time zone."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import SCREENSHOTS, LiveServer, OperatorAccount, tenant_id_of
from tests.e2e.test_inventory_browser import owner_logs_in
from tests.integration.kpis.scenario import seed

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
#: The widest right edge of anything in the page's <main>, against the viewport (the top menu is another
#: helper's; the overview's own content must fit).
OVERFLOW = """() => {
  const w = document.documentElement.clientWidth;
  let worst = 0;
  for (const e of document.querySelectorAll('main *')) {
    const r = e.getBoundingClientRect();
    if (r.width && r.right > worst) worst = r.right;
  }
  return [worst, w];
}"""


def _fits(page: Any) -> None:
    worst, width = page.evaluate(OVERFLOW)
    assert worst <= width + 1, f"content {worst}px wide on a {width}px screen"


def test_overview_empty_then_with_figures_and_trends(page: Any, live_server: LiveServer,
                                                     operator_account: OperatorAccount) -> None:
    from playwright.sync_api import expect

    page.set_viewport_size(DESKTOP)
    slug = owner_logs_in(page, live_server, operator_account, "ov-")
    expect(page.locator("[data-page-name]")).to_have_text("数据概览")
    expect(page.locator("h1")).to_have_text(f"Shop {slug}")
    steps = page.locator("[data-empty-state] [data-step]")
    expect(steps).to_have_count(3)
    expect(page.locator('[data-step="product"] a')).to_have_attribute("href", "/console/products/new")
    _fits(page)
    page.screenshot(path=str(SCREENSHOTS / "overview-empty.png"), full_page=True)

    live_server.run(seed(live_server.app.state.kernel, tenant_id_of(live_server, slug), names=("抖音小店", "美团门店")))
    page.reload()
    expect(page.locator("[data-empty-state]")).to_have_count(0)
    stock = page.locator('[data-figure="stock_value"] a.stat-value')
    expect(stock).to_have_text("¥258.00")  # P 13 × ¥6 + Q 9 × ¥20
    expect(page.locator('[data-figure="grants"] a[data-today]')).to_have_attribute(
        "href", re.compile(r"^/console/grants\?from=\d{4}-\d{2}-\d{2}&to=\d{4}-\d{2}-\d{2}$"))
    activity = page.locator('[data-chart="activity"] svg[role=img]')
    expect(activity.locator("circle")).to_have_count(2 * 14)
    expect(page.locator('[data-chart="sales"] svg circle')).to_have_count(14)
    expect(page.locator('[data-chart="sales"] svg > title')).to_contain_text("每日渠道销售额")
    expect(page.locator('[data-chart="sales"] svg')).to_have_attribute("viewBox", "0 0 640 220")
    _fits(page)
    page.screenshot(path=str(SCREENSHOTS / "overview-1280.png"), full_page=True)

    page.locator("[data-windows] a", has_text="近 30 天").click()
    expect(page.locator('[data-windows] a[aria-current="page"]')).to_have_text("近 30 天")
    expect(page.locator('[data-chart="activity"] svg circle')).to_have_count(2 * 30)

    page.set_viewport_size(PHONE)
    page.goto("/console")
    box = page.locator('[data-chart="sales"] svg').bounding_box()
    assert box is not None and 200 < box["width"] <= PHONE["width"]
    _fits(page)
    page.screenshot(path=str(SCREENSHOTS / "overview-390.png"), full_page=True)

    page.locator('[data-figure="stock_value"] a.stat-value').click()
    expect(page).to_have_url(f"{live_server.url}/console/stock")


def test_operator_sees_plan_names_and_own_time_zone(page: Any, live_server: LiveServer,
                                                    operator_account: OperatorAccount) -> None:
    from playwright.sync_api import expect

    page.set_viewport_size(DESKTOP)
    page.goto("/platform/login")
    page.fill("#f-email", operator_account.email)
    page.fill("#f-password", operator_account.password)
    page.click("button[type=submit]")
    page.goto("/platform/tenants/new")
    page.fill("#f-slug", "Bad_Slug")
    page.fill("#f-name", "坏标识")
    page.fill("#f-owner_email", "o@bad.example.com")
    page.evaluate("document.querySelector('form.form').noValidate = true")
    page.click("form.form button[type=submit]")
    expect(page.locator("[data-problem]")).to_contain_text("以字母或数字开头和结尾")
    page.goto("/platform/plans")
    expect(page.locator('tr[data-plan="growth"] [data-plan-name]')).to_have_text("成长版")
    page.locator("[data-profile-link]").click()
    expect(page.locator("#f-timezone")).to_have_value("Asia/Shanghai")
    page.set_viewport_size(PHONE)
    _fits(page)
    page.screenshot(path=str(SCREENSHOTS / "operator-profile-390.png"), full_page=True)
