"""Clerks (核销员) in the console: the owner adds stores and picks a clerk's stores on the users page; a
clerk lands on the redeem page, redeems only at their stores (pre-selected when one, refused otherwise with
a readable message), sees only their own redemptions, and gets 403 on the back-office pages."""

from __future__ import annotations

from typing import Any

from tests.integration.console.conftest import Browser, text_of
from tests.integration.redemption.helpers import code_state, issued_codes

REDEEM = "/console/redeem"


async def _stores(browser: Browser, t: Any) -> dict[str, str]:
    """Log the owner in and add two stores through the stores page; their ids by code."""
    assert (await browser.console_login(t.slug, t.owner_email, t.owner_password)).status_code in (200, 303)
    for code, name in (("E1", "东店"), ("W1", "西店")):
        r = await browser.submit(
            "/console/stores", "/console/stores", {"code": code, "name": name, "city": "上海"}
        )
        assert r.status_code == 303, text_of(r.text)[:300]
    bad = await browser.submit("/console/stores", "/console/stores", {"code": "东 1", "name": "x"})
    assert bad.status_code == 422 and "门店编号为 1 至 20 位字母、数字、- 或 _" in text_of(bad.text)
    page = await browser.get("/console/stores")
    assert 'data-store="E1"' in page.text and 'data-store="W1"' in page.text
    import re

    return dict(re.findall(r'data-store="(\w+)">.*?/console/stores/([0-9a-f-]{36})', page.text, re.S))


async def test_clerk_redeems_only_at_their_stores(browser, new_browser, kernel, make_tenant, make_user):
    t = await make_tenant()
    ids = await _stores(browser, t)
    clerk = await make_user(t, "clerk")
    other = await make_user(t, "clerk")
    users = await browser.get("/console/users")
    assert f'data-clerk-stores="{clerk.email}"' in users.text
    r = await browser.submit("/console/users", f"/console/users/{clerk.id}/stores", {"store_ids": ids["E1"]})
    assert r.status_code == 303
    iss = await issued_codes(kernel, t.id, 4, with_pin=False)
    # the owner redeems one at the west store: the clerk must not see it
    owner_red = await browser.submit(
        REDEEM, REDEEM, {"code": iss.numbers[3], "store_id": ids["W1"], "action": "redeem"}
    )
    assert 'data-result="ok"' in owner_red.text

    me = new_browser()
    r = await me.console_login(t.slug, clerk.email, clerk.password)
    assert r.status_code == 303
    home = await me.get("/console")
    assert home.status_code == 303 and home.headers["location"] == "/console/redeem"
    for back_office in (
        "/console/products",
        "/console/stores",
        "/console/users",
        "/console/reports/redemptions",
    ):
        assert (await me.get(back_office)).status_code == 403, back_office
    page = await me.get(REDEEM)
    assert page.status_code == 200 and f'<option value="{ids["E1"]}" selected' in page.text
    assert ids["W1"] not in page.text and "西店" not in text_of(
        page.text
    )  # the owner's redemption is not shown

    ok = await me.submit(REDEEM, REDEEM, {"code": iss.numbers[0], "store_id": ids["E1"], "action": "redeem"})
    assert ok.status_code == 200 and 'data-result="ok"' in ok.text, text_of(ok.text)[:400]
    notmine = await me.submit(
        REDEEM, REDEEM, {"code": iss.numbers[1], "store_id": ids["W1"], "action": "redeem"}
    )
    assert notmine.status_code == 403 and 'data-problem-code="store_not_yours"' in notmine.text
    assert "未分配给您" in text_of(notmine.text)
    assert await code_state(kernel, t.id, iss.code_ids[1]) == "issued"
    check = await me.submit(
        REDEEM, REDEEM, {"code": iss.numbers[1], "store_id": ids["W1"], "action": "validate"}
    )
    assert check.status_code == 403 and 'data-problem-code="store_not_yours"' in check.text
    # no store sent: the clerk's only store is used
    r = await me.submit(REDEEM, REDEEM, {"code": iss.numbers[1], "store_id": "", "action": "redeem"})
    assert 'data-result="ok"' in r.text

    # two stores and none chosen: asked to choose
    await browser.submit("/console/users", f"/console/users/{clerk.id}/stores",
                         [("store_ids", ids["E1"]), ("store_ids", ids["W1"])])  # fmt: skip
    page = await me.get(REDEEM)
    assert "请选择门店" in page.text
    r = await me.submit(REDEEM, REDEEM, {"code": iss.numbers[2], "store_id": "", "action": "redeem"})
    assert r.status_code == 422 and 'data-problem-code="store_required"' in r.text

    # a clerk without stores is told so, and cannot redeem
    them = new_browser()
    await them.console_login(t.slug, other.email, other.password)
    page = await them.get(REDEEM)
    assert "data-no-store" in page.text
    r = await them.submit(REDEEM, REDEEM, {"code": iss.numbers[2], "action": "redeem"})
    assert r.status_code == 403 and 'data-problem-code="clerk_without_store"' in r.text

    report = await browser.get("/console/reports/redemptions")
    assert report.status_code == 200
    assert clerk.email in report.text and 'data-row="E1"' in report.text and 'data-row="W1"' in report.text


async def test_store_edit_and_deactivate_in_the_console(browser, make_tenant):
    t = await make_tenant()
    ids = await _stores(browser, t)
    edit = f"/console/stores/{ids['E1']}"
    r = await browser.submit(edit, edit, {"code": "E1", "name": "西店"})
    assert r.status_code == 409 and "已有其他门店使用名称“西店”" in text_of(r.text)
    r = await browser.submit(edit, edit, {"code": "E1", "name": "东方店", "district": "浦东新区"})
    assert r.status_code == 303
    r = await browser.submit("/console/stores", f"{edit}/deactivate", {})
    assert r.status_code == 303
    page = await browser.get("/console/stores")
    assert "东方店" in page.text and "浦东新区" in page.text and f"{edit}/activate" in page.text


async def test_day_filters_at_the_ends_of_the_calendar_answer_a_page(browser, make_tenant):
    """0001-01-01 and 9999-12-31 in a console date filter: a readable page (or the filter ignored), never a 500."""
    t = await make_tenant()
    assert (await browser.console_login(t.slug, t.owner_email, t.owner_password)).status_code in (200, 303)
    r = await browser.get("/console/reports/redemptions", params={"from": "0001-01-01", "to": "9999-12-31"})
    assert r.status_code == 422 and "日期须在" in text_of(r.text)
    for path in ("/console/grants", "/console/channel-orders"):
        for edge in ({"from": "0001-01-01"}, {"to": "9999-12-31"}, {"from": "0001-01-01", "to": "9999-12-31"}):
            assert (await browser.get(path, params=edge)).status_code == 200, (path, edge)

