"""The console's KPI page (cards with flags, SVG charts, per-channel and breakage tables, windows) and the
complaint form on a channel order's page, through the server-rendered console."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from tests.integration.console.conftest import Browser, browser, text_of  # noqa: F401
from tests.integration.kpis.scenario import Scenario, seed


@pytest.fixture
async def logged_in(kernel: Any, make_tenant: Any, browser: Browser) -> tuple[Browser, Scenario]:  # noqa: F811
    tenant = await make_tenant()
    sc = await seed(kernel, tenant.id, names=("抖音小店", "美团门店"))
    r = await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    assert r.status_code in (200, 303)
    return browser, sc


async def test_kpi_page_shows_cards_flags_charts_and_tables(logged_in: tuple[Browser, Scenario]) -> None:
    br, sc = logged_in
    r = await br.get("/console/kpis")
    assert r.status_code == 200, r.text
    html = r.text
    text = text_of(html)
    assert "渠道经营指标" in text and "抖音小店" in text and "美团门店" in text
    assert "¥90.00" in text  # overall net sales
    assert "16.22%" in text and "超过 15%" in text  # overall split cost flagged
    assert "66.67%" in text  # complaint rate
    assert "¥106.00" in text  # sold, never redeemed
    assert html.count("<svg") == 3
    for chunk in html.split("<svg")[1:]:
        ET.fromstring("<svg" + chunk.split("</svg>")[0] + "</svg>")  # each chart parses as XML
    row_b = html.split(f'<tr data-account="{sc.shop_b.account_id}">')[1].split("</tr>")[0]
    assert 'data-kpi="split_cost">20.00%' in row_b and "data-flag" in row_b
    row_a = html.split(f'<tr data-account="{sc.shop_a.account_id}">')[1].split("</tr>")[0]
    assert 'data-kpi="split_cost">11.50%' in row_a
    assert 'aria-current="page">30 天' in html


async def test_kpi_window_choice_and_bad_window(logged_in: tuple[Browser, Scenario]) -> None:
    br, _ = logged_in
    r = await br.get("/console/kpis", params={"days": "7"})
    assert r.status_code == 200 and 'aria-current="page">7 天' in r.text
    r = await br.get("/console/kpis", params={"days": "12"})
    assert r.status_code == 422
    assert "统计区间只能是 7、30、90、365 天" in text_of(r.text) and "Traceback" not in r.text
    r = await br.get("/console/kpis", params={"days": "abc"})
    assert r.status_code == 422 and "data-problem" in r.text


async def test_complaint_form_on_the_order_page(logged_in: tuple[Browser, Scenario]) -> None:
    br, sc = logged_in
    page = f"/console/channel-orders/{sc.orders['A2']}"
    r = await br.get(page)
    assert r.status_code == 200 and "该订单没有投诉。" in r.text
    r = await br.submit(page, f"{page}/complaints", {"category": "delivery", "note": "买家说没收到"})
    assert r.status_code == 303
    r = await br.get(page)
    assert "买家说没收到" in r.text and "券码迟到或未收到" in text_of(r.text) and "投诉已记录。" in r.text
    r = await br.submit(page, f"{page}/complaints", {"category": "bogus", "note": "x"})
    assert r.status_code == 422 and "data-problem" in r.text and "Traceback" not in r.text
    r = await br.submit(page, f"{page}/complaints", {"category": "other", "note": "长" * 501})
    assert r.status_code == 422
    assert text_of((await br.get(page)).text).count("买家说没收到") == 1
