"""Reconciliation in headless Chromium: pick the account and the period, run, read the counts per class,
filter by class, resolve an amount mismatch with a reason (the form refuses a missing reason first)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.e2e.conftest import SCREENSHOTS, LiveServer, tenant_id_of
from tests.e2e.test_inventory_browser import owner_logs_in
from tests.integration.reconciliation.recon_fixtures import at, make_world

pytestmark = pytest.mark.browser


async def _world(kernel: Any, tenant_id: uuid.UUID) -> None:
    world = await make_world(kernel, tenant_id)
    await world.sale("DY-1", {"L1": 10000}, at(3))
    await world.sale("DY-2", {"L1": 8000}, at(3))
    await world.statement([
        {"line_id": "s1", "order_id": "DY-1", "order_line_id": "L1", "amount_fen": 10000, "commission_fen": 1000},
        {"line_id": "s2", "order_id": "DY-2", "order_line_id": "L1", "amount_fen": 7900, "commission_fen": 790},
        {"line_id": "s3", "order_id": "DY-9", "order_line_id": "L1", "amount_fen": 500, "commission_fen": 50},
    ])


def test_reconcile_and_resolve_in_the_console(page: Any, live_server: LiveServer, operator_account: Any) -> None:
    from playwright.sync_api import expect

    slug = owner_logs_in(page, live_server, operator_account, "recon-")
    live_server.run(_world(live_server.app.state.kernel, tenant_id_of(live_server, slug)))
    page.goto("/console/reconciliation")
    expect(page.locator("h1")).to_have_text("对账")
    page.fill("#f-period", "2026-03")
    page.locator("[data-run-form] button").click()
    expect(page.locator('[data-count="matched"]')).to_have_text("1")
    expect(page.locator('[data-count="amount_mismatch"]')).to_have_text("1")
    expect(page.locator('[data-count="missing_ours"]')).to_have_text("1")
    page.locator('[data-class-tab="amount_mismatch"]').click()
    rows = page.locator('[data-table="recon-items"] tr[data-item]')
    expect(rows).to_have_count(1)
    expect(rows.first.locator("[data-diff]")).to_have_text("-¥1.00")
    form = page.locator("[data-resolve-form]").first
    form.locator("select[name=resolution]").select_option("accept_theirs")
    form.locator("input[name=reason]").fill("渠道少结 1 元，已核实")
    form.locator("button").click()
    expect(page.locator('[data-table="recon-items"] tr[data-status="resolved"]')).to_have_count(1)
    expect(page.locator('[data-table="recon-items"]')).to_contain_text("渠道少结 1 元，已核实")
    page.locator('[data-class-tab="missing_ours"]').click()
    form = page.locator("[data-resolve-form]").first
    form.locator("select[name=resolution]").select_option("adjustment")
    form.locator("input[name=amount]").fill("1.005")
    form.locator("input[name=reason]").fill("x")
    form.locator("button").click()
    expect(page.locator("[data-problem]")).to_contain_text("元")
    page.screenshot(path=str(SCREENSHOTS / "reconciliation.png"), full_page=True)
