"""The staff scan page through the console (server-rendered forms, CSRF, permissions): redeem, PIN asked
when needed, stored-value amount, check only, big result, store/terminal remembered, rollback, window."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.console.conftest import Browser, text_of
from tests.integration.redemption.helpers import age_redemption, code_state, issued_codes

PAGE = "/console/redeem"


async def _login(browser: Browser, t: Any, user: Any = None) -> None:
    email, password = (user.email, user.password) if user else (t.owner_email, t.owner_password)
    r = await browser.console_login(t.slug, email, password)
    assert r.status_code in (200, 303), r.text


async def test_scan_redeem_with_pin_and_remembered_place(browser, kernel, make_tenant):
    t = await make_tenant()
    iss = await issued_codes(kernel, t.id, 1)
    await _login(browser, t)
    page = await browser.get(PAGE, headers={"Accept-Language": "en"})
    assert page.status_code == 200 and "data-code-input" in page.text and "autofocus" in page.text
    first = await browser.submit(
        PAGE, PAGE, {"code": iss.numbers[0], "store": "Mall 1", "terminal": "Till 2", "action": "redeem"}
    )
    assert first.status_code == 422 and 'data-problem-code="pin_required"' in first.text
    assert "data-pin-input" in first.text and iss.numbers[0] in first.text  # kept for the PIN retry
    wrong = await browser.submit(PAGE, PAGE, {"code": iss.numbers[0], "pin": "nope", "action": "redeem"})
    assert 'data-problem-code="pin_mismatch"' in wrong.text
    ok = await browser.submit(
        PAGE,
        PAGE,
        {
            "code": iss.numbers[0],
            "pin": iss.pins[0],
            "store": "Mall 1",
            "terminal": "Till 2",
            "action": "redeem",
        },
    )
    assert ok.status_code == 200 and 'data-result="ok"' in ok.text, text_of(ok.text)[:500]
    assert await code_state(kernel, t.id, iss.code_ids[0]) == "redeemed"
    assert iss.numbers[0] not in ok.text and iss.pins[0] not in ok.text
    again = await browser.submit(
        PAGE,
        PAGE,
        {"code": iss.numbers[0], "pin": iss.pins[0], "action": "redeem"},
        headers={"Accept-Language": "en"},
    )
    assert again.status_code == 409 and 'data-problem-code="already_redeemed"' in again.text
    assert "Mall 1 / Till 2" in text_of(again.text)
    fresh = await browser.get(PAGE)
    assert 'value="Mall 1"' in fresh.text and 'value="Till 2"' in fresh.text  # remembered in the session
    assert "Mall 1 / Till 2" in text_of(fresh.text)  # in the recent list


async def test_stored_value_amount_check_only_and_rollback(browser, kernel, make_tenant):
    t = await make_tenant()
    iss = await issued_codes(kernel, t.id, 1, kind="stored_value", with_pin=False)
    await _login(browser, t)
    need = await browser.submit(PAGE, PAGE, {"code": iss.numbers[0], "action": "redeem"})
    assert 'data-problem-code="amount_required"' in need.text and "data-amount-input" in need.text
    checked = await browser.submit(
        PAGE, PAGE, {"code": iss.numbers[0], "amount": "2.50", "action": "validate"}
    )
    assert 'data-result="valid"' in checked.text and "10.00" in text_of(checked.text)
    assert await code_state(kernel, t.id, iss.code_ids[0]) == "issued"
    spent = await browser.submit(PAGE, PAGE, {"code": iss.numbers[0], "amount": "2.50", "action": "redeem"})
    assert 'data-result="ok"' in spent.text and "7.50" in text_of(spent.text)
    bad_amount = await browser.submit(
        PAGE, PAGE, {"code": iss.numbers[0], "amount": "1.234", "action": "redeem"}
    )
    assert bad_amount.status_code == 422 and "data-amount-input" in bad_amount.text
    import re

    red_id = re.search(r'data-redemption="([0-9a-f-]+)"', spent.text).group(1)
    back = await browser.submit(PAGE, f"{PAGE}/{red_id}/rollback", {"reason": "refund"})
    assert back.status_code == 303
    page = await browser.get(PAGE)
    assert "data-rollback" not in page.text  # rolled back: nothing left to roll back
    ledger_balance = await browser.submit(
        PAGE, PAGE, {"code": iss.numbers[0], "amount": "10", "action": "validate"}
    )
    assert "10.00" in text_of(ledger_balance.text)


async def test_rollback_needs_permission_and_window(browser, kernel, make_tenant, make_user):
    t = await make_tenant()
    iss = await issued_codes(kernel, t.id, 2, with_pin=False)
    operator = await make_user(t, "operator")  # may redeem, may not roll back
    await _login(browser, t, operator)
    ok = await browser.submit(PAGE, PAGE, {"code": iss.numbers[0], "action": "redeem"})
    assert (
        'data-result="ok"' in ok.text
        and "data-rollback" not in ok.text
        and "data-settings-form" not in ok.text
    )
    import re

    red_id = re.search(r'data-redemption="([0-9a-f-]+)"', ok.text).group(1)
    denied = await browser.submit(PAGE, f"{PAGE}/{red_id}/rollback", {"reason": "x"})
    assert denied.status_code == 403
    assert await code_state(kernel, t.id, iss.code_ids[0]) == "redeemed"


async def test_owner_changes_window_and_late_rollback_is_refused(browser, kernel, make_tenant):
    import uuid

    t = await make_tenant()
    iss = await issued_codes(kernel, t.id, 1, with_pin=False)
    await _login(browser, t)
    ok = await browser.submit(PAGE, PAGE, {"code": iss.numbers[0], "action": "redeem"})
    import re

    red_id = re.search(r'data-redemption="([0-9a-f-]+)"', ok.text).group(1)
    saved = await browser.submit(PAGE, f"{PAGE}/settings", {"rollback_window_minutes": "10"})
    assert saved.status_code == 303
    bad = await browser.submit(PAGE, f"{PAGE}/settings", {"rollback_window_minutes": "-3"})
    assert bad.status_code == 422
    await age_redemption(kernel, t.id, uuid.UUID(red_id), 11)
    page = await browser.get(PAGE)
    assert 'value="10"' in page.text and "data-rollback" not in page.text
    late = await browser.submit(PAGE, f"{PAGE}/{red_id}/rollback", {"reason": "late"})
    assert late.status_code == 409 and 'data-problem-code="rollback_window_passed"' in late.text


async def test_viewer_cannot_open_the_scan_page_and_other_tenant_gets_404(
    browser, kernel, make_tenant, make_user, new_browser
):
    t = await make_tenant()
    viewer = await make_user(t, "viewer")
    await _login(browser, t, viewer)
    assert (await browser.get(PAGE)).status_code == 403
    other = await make_tenant()
    iss = await issued_codes(kernel, other.id, 1, with_pin=False)
    b2 = new_browser()
    await _login(b2, other)
    ok = await b2.submit(PAGE, PAGE, {"code": iss.numbers[0], "action": "redeem"})
    import re

    red_id = re.search(r'data-redemption="([0-9a-f-]+)"', ok.text).group(1)
    b3 = new_browser()
    await _login(b3, t)
    r = await b3.submit(PAGE, f"{PAGE}/{red_id}/rollback", {"reason": "steal"})
    assert r.status_code == 404
    scan = await b3.submit(PAGE, PAGE, {"code": iss.numbers[0], "action": "redeem"})
    assert 'data-problem-code="code_not_found"' in scan.text
    assert await code_state(kernel, other.id, iss.code_ids[0]) == "redeemed"


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
