"""Console settlement pages: the list (landing page of 结算对账) and a settlement's page with its totals
and lines; confirm (refused with a readable message, then forced with a reason), pay (reference required),
the XLSX export link; a role without ``settlement.manage`` sees no forms and is refused."""

from __future__ import annotations

import io

from openpyxl import load_workbook

from tests.integration.console.conftest import browser, make_user, text_of  # noqa: F401
from tests.integration.settlements.scenario import seed_month


async def test_settlement_pages_confirm_pay_and_export(browser, kernel, seller) -> None:  # noqa: F811
    month = await seed_month(kernel, seller.tenant_id, seller.account_id)
    r = await browser.console_login(seller.slug, seller.email, seller.password)
    assert r.status_code == 303
    listing = await browser.get("/console/settlements")
    assert listing.status_code == 200
    text = text_of(listing.text)
    assert "结算对账" in text and "抖音小店" in text and "2026-10" in text and "¥91.00" in text and "¥150.00" in text
    assert 'data-status="open"' in listing.text
    page = f"/console/settlements/{month.account_id}/{month.period}"
    assert f'href="{page}"' in listing.text

    detail = await browser.get(page)
    text = text_of(detail.text)
    assert detail.status_code == 200 and "¥91.00" in text and "¥12.00" in text and "¥50.00" in text
    assert "ORD-1" in text and "SKU-2" in text and "（无订单行）" in text and "尚未对账" in text
    assert "data-confirm-form" in detail.text and "data-pay-form" not in detail.text

    r = await browser.submit(page, f"{page}/confirm", {"reason": ""})
    assert r.status_code == 409 and "该期间尚未对账" in text_of(r.text) and "Traceback" not in r.text
    r = await browser.submit(page, f"{page}/confirm", {"force": "1", "reason": ""})
    assert r.status_code == 422 and "必须填写原因" in text_of(r.text)
    r = await browser.submit(page, f"{page}/confirm", {"force": "1", "reason": "渠道未提供账单"})
    assert r.status_code == 303 and r.headers["location"] == page
    confirmed = await browser.get(page)
    assert 'data-settlement-status="confirmed"' in confirmed.text and "data-pay-form" in confirmed.text
    assert "结算已确认" in text_of(confirmed.text)

    r = await browser.submit(page, f"{page}/pay", {"payment_ref": "   "})
    assert r.status_code == 422 and "付款凭证号" in text_of(r.text)
    r = await browser.submit(page, f"{page}/pay", {"payment_ref": "BANK-77"})
    assert r.status_code == 303
    paid = await browser.get(page)
    assert 'data-settlement-status="paid"' in paid.text and "BANK-77" in paid.text
    assert "data-pay-form" not in paid.text and "data-confirm-form" not in paid.text

    xlsx = await browser.get(f"{page}/export.xlsx")
    assert xlsx.status_code == 200
    book = load_workbook(io.BytesIO(xlsx.content), read_only=True)
    summary = {row[0]: row[1] for row in book["Summary"].iter_rows(min_row=2, values_only=True)}
    assert summary["Status / 状态"] == "paid" and summary["Payment reference / 付款凭证"] == "BANK-77"

    filtered = await browser.get("/console/settlements?status=paid&period=2026-10")
    assert "BANK-77" not in filtered.text and 'data-status="paid"' in filtered.text
    bad = await browser.get("/console/settlements?period=2026-1")
    assert bad.status_code == 200 and "YYYY-MM" in text_of(bad.text)
    missing = await browser.get(f"/console/settlements/{month.account_id}/2026-99")
    assert missing.status_code == 422 and "Traceback" not in missing.text


async def test_a_role_without_manage_sees_no_forms_and_is_refused(browser, kernel, seller, make_user) -> None:  # noqa: F811
    from tests.conftest import TenantHandle

    month = await seed_month(kernel, seller.tenant_id, seller.account_id)
    handle = TenantHandle(seller.tenant_id, seller.slug, seller.email, seller.password, "")
    user = await make_user(handle, "operator")
    assert (await browser.console_login(seller.slug, user.email, user.password)).status_code == 303
    page = f"/console/settlements/{month.account_id}/{month.period}"
    detail = await browser.get(page)
    assert detail.status_code == 200 and "data-confirm-form" not in detail.text and "¥91.00" in text_of(detail.text)
    r = await browser.submit("/console/settlements", f"{page}/confirm", {"force": "1", "reason": "x"})
    assert r.status_code == 403
