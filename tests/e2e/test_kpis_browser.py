"""Channel KPIs in headless Chromium: the owner opens the KPI page of a seeded scenario, sees the cards with
their flags in red, the server-drawn charts and the per-channel table, changes the window, records a
complaint on an order and sees the complaint rate follow."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import SCREENSHOTS, LiveServer, tenant_id_of
from tests.e2e.test_inventory_browser import owner_logs_in
from tests.integration.kpis.scenario import seed

pytestmark = pytest.mark.browser




def test_kpis_page_and_complaint_in_the_console(page: Any, live_server: LiveServer, operator_account: Any) -> None:
    from playwright.sync_api import expect

    slug = owner_logs_in(page, live_server, operator_account, "kpi-")
    tenant_id = tenant_id_of(live_server, slug)
    sc = live_server.run(seed(live_server.app.state.kernel, tenant_id, names=("抖音小店", "美团门店")))

    page.goto("/console/kpis")
    expect(page.locator("h1")).to_have_text("渠道经营指标")
    expect(page.locator('.tabs a[aria-current="page"]').first).to_have_text("渠道经营指标")
    split = page.locator('[data-card="split_cost"]')
    expect(split.locator(".stat-value")).to_contain_text("16.22%")
    expect(split.locator("[data-flag]")).to_have_text("超过 15%")
    assert "rgb(" in split.locator(".stat-value").evaluate("e => getComputedStyle(e).color")
    expect(page.locator('[data-card="redemption_rate"] [data-flag]')).to_have_count(0)
    expect(page.locator('[data-card="complaint_rate"] .stat-value')).to_contain_text("66.67%")
    charts = page.locator("section.chart svg[role=img]")
    expect(charts).to_have_count(3)
    expect(page.locator('[data-chart="daily"] svg title').first).to_have_text("每日销售")
    box = page.locator('[data-chart="daily"] svg').bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 50
    row_b = page.locator(f'[data-table="kpi-channels"] tr[data-account="{sc.shop_b.account_id}"]')
    expect(row_b).to_contain_text("美团门店")
    expect(row_b.locator('[data-kpi="split_cost"]')).to_contain_text("20.00%")
    expect(row_b.locator('[data-kpi="split_cost"] [data-flag]')).to_be_visible()
    expect(page.locator('[data-table="kpi-breakage"] tr[data-account="all"] [data-bucket="expired"]')).to_contain_text(
        "¥50.00")
    page.screenshot(path=str(SCREENSHOTS / "kpis.png"), full_page=True)

    page.locator("[data-windows] a", has_text="7 天").click()
    expect(page.locator('[data-windows] a[aria-current="page"]')).to_have_text("7 天")

    page.goto(f"/console/channel-orders/{sc.orders['A2']}")
    page.select_option("[data-complaint-form] select[name=category]", "code_invalid")
    page.fill("[data-complaint-form] textarea[name=note]", "券码提示已使用")
    page.locator("[data-complaint-form] button").click()
    expect(page.locator('[data-list="complaints"] li')).to_contain_text("券码提示已使用")

    page.goto("/console/kpis")
    row_a = page.locator(f'[data-table="kpi-channels"] tr[data-account="{sc.shop_a.account_id}"]')
    expect(row_a.locator('[data-kpi="complaint_rate"]')).to_contain_text("100.00%")
