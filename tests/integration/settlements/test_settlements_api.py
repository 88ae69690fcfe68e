"""Settlements through the API: live totals from the split ledger, lines, the status machine (bad
transitions answer 409 with a code), period locking (a refund after confirmation lands in the next month),
and the XLSX export opened and checked."""

from __future__ import annotations

import io
import uuid
from typing import Any

from openpyxl import load_workbook
from sqlalchemy import select

from core.audit.models import AuditEvent
from core.db.context import tenant_context
from core.settlement.models import ReconItem, ReconRun
from core.settlement.settlements import mark_reconciled
from core.splits.ledger import append
from core.splits.models import LedgerPeriod, SplitEntry
from tests.integration.settlements.scenario import EXPECTED, at, rows, seed_month

BASE = "/api/v1/settlements"


def url(month: Any, tail: str = "") -> str:
    return f"{BASE}/{month.account_id}/{month.period}{tail}"


async def reconcile(kernel: Any, tenant_id: uuid.UUID, month: Any, open_items: int) -> None:
    """A reconciliation run of the month with ``open_items`` open items (as the recon service leaves it)."""
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            run = ReconRun(account_id=month.account_id, period=month.period, status="done", started_at=at(2026, 11))
            db.add(run)
            await db.flush()
            for n in range(open_items):
                db.add(ReconItem(run_id=run.id, account_id=month.account_id, period=month.period,
                                 klass="amount_mismatch", channel_order_id=f"X-{n}", status="open"))
            await db.flush()
            await mark_reconciled(db, month.account_id, month.period, run.id, open_items)


async def test_live_totals_parties_and_lines(client, kernel, seller) -> None:
    month = await seed_month(kernel, seller.tenant_id, seller.account_id)
    r = await client.get(url(month), headers=seller.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "open" and body["live"] is True and body["id"] is None
    assert body["totals"] == EXPECTED
    assert body["parties"] == {"channel": 800, "platform": 100, "tenant": 9_100}
    assert body["open_items"] is None and body["account_name"] == "抖音小店"

    page = (await client.get(url(month, "/lines"), headers=seller.headers)).json()
    by_order = {ln["channel_order_id"]: ln for ln in page["items"]}
    assert set(by_order) == {"ORD-1", "ORD-2", ""}
    one, two, loose = by_order["ORD-1"], by_order["ORD-2"], by_order[""]
    assert (one["gross_fen"], one["channel_fen"], one["platform_fen"], one["tenant_fen"], one["refunds_fen"],
            one["net_due_fen"], one["sku"], one["quantity"]) == (10_000, 500, 100, 4_400, 5_000, 4_400, "SKU-1", 2)
    assert (two["gross_fen"], two["channel_fen"], two["tenant_fen"], two["refunds_fen"], two["net_due_fen"]) == (
        5_000, 600, 4_400, 0, 4_400)
    assert loose["line_id"] is None and loose["adjustments_fen"] == 300 and loose["net_due_fen"] == 300
    assert sum(ln["net_due_fen"] for ln in page["items"]) == EXPECTED["net_due_fen"]

    first = (await client.get(url(month, "/lines"), params={"limit": 1}, headers=seller.headers)).json()
    assert len(first["items"]) == 1 and first["next_cursor"] == first["items"][0]["line_id"]
    rest = (await client.get(url(month, "/lines"), params={"limit": 1, "cursor": first["next_cursor"]},
                             headers=seller.headers)).json()
    # the second line, then (last page) the adjustment rows that name no line
    assert rest["next_cursor"] is None and [ln["line_id"] is None for ln in rest["items"]] == [False, True]
    assert {first["items"][0]["line_id"], rest["items"][0]["line_id"]} == {str(i) for i in month.line_ids}


async def test_list_filters_and_cursor(client, kernel, seller) -> None:
    oct_ = await seed_month(kernel, seller.tenant_id, seller.account_id, 2026, 10, "OCT")
    await seed_month(kernel, seller.tenant_id, seller.account_id, 2026, 9, "SEP")
    await reconcile(kernel, seller.tenant_id, oct_, 0)
    r = await client.get(BASE, headers=seller.headers)
    items = r.json()["items"]
    assert [(i["period"], i["status"]) for i in items] == [("2026-10", "reconciled"), ("2026-09", "open")]
    assert all(i["totals"] == EXPECTED for i in items)
    page1 = (await client.get(BASE, params={"limit": 1}, headers=seller.headers)).json()
    assert [i["period"] for i in page1["items"]] == ["2026-10"] and page1["next_cursor"]
    page2 = (await client.get(BASE, params={"limit": 1, "cursor": page1["next_cursor"]},
                              headers=seller.headers)).json()
    assert [i["period"] for i in page2["items"]] == ["2026-09"] and page2["next_cursor"] is None
    only = (await client.get(BASE, params={"status": "reconciled"}, headers=seller.headers)).json()["items"]
    assert [i["period"] for i in only] == ["2026-10"]
    only = (await client.get(BASE, params={"period": "2026-09", "account": str(seller.account_id)},
                             headers=seller.headers)).json()["items"]
    assert [i["period"] for i in only] == ["2026-09"]
    for params, code in (({"status": "nope"}, "validation_failed"), ({"period": "2026-13"}, "settlement_period_invalid"),
                         ({"cursor": "garbage"}, "bad_cursor")):
        r = await client.get(BASE, params=params, headers=seller.headers)
        assert r.status_code == 422 and r.json()["code"] == code, (params, r.text)


async def test_status_machine_refuses_bad_transitions(client, kernel, seller) -> None:
    month = await seed_month(kernel, seller.tenant_id, seller.account_id)
    h = seller.headers

    async def post(tail: str, body: dict[str, Any]) -> Any:
        return await client.post(url(month, tail), json=body, headers=h)

    r = await post("/pay", {"payment_ref": "BANK-1"})
    assert r.status_code == 409 and r.json()["code"] == "settlement_not_confirmed"
    r = await post("/confirm", {})
    assert r.status_code == 409 and r.json()["code"] == "settlement_not_reconciled"
    assert "not been reconciled" in r.json()["detail"] or "尚未对账" in r.json()["detail"]
    r = await post("/confirm", {"force": True, "reason": "   "})
    assert r.status_code == 422 and r.json()["code"] == "settlement_reason_required"
    await reconcile(kernel, seller.tenant_id, month, 0)
    assert (await client.get(url(month), headers=h)).json()["status"] == "reconciled"
    await reconcile(kernel, seller.tenant_id, month, 2)  # a later run finds open items: back to open
    assert (await client.get(url(month), headers=h)).json()["status"] == "open"
    r = await post("/confirm", {})
    assert r.status_code == 409 and r.json()["code"] == "settlement_not_reconciled" and r.json()["open_items"] == 2
    await reconcile(kernel, seller.tenant_id, month, 0)
    assert (await client.get(url(month), headers=h)).json()["status"] == "reconciled"

    r = await post("/confirm", {})
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "confirmed" and done["live"] is False and done["totals"] == EXPECTED
    assert done["confirmed_by"].startswith("client:") and done["open_items"] == 0
    r = await post("/confirm", {"force": True, "reason": "again"})
    assert r.status_code == 409 and r.json()["code"] == "settlement_already_confirmed"
    r = await post("/pay", {"payment_ref": ""})
    assert r.status_code in (400, 422)
    r = await post("/pay", {"payment_ref": "  "})
    assert r.status_code == 422 and r.json()["code"] == "settlement_payment_ref_required"
    r = await post("/pay", {"payment_ref": "BANK-20261105", "paid_at": "2099-01-01T00:00:00Z"})
    assert r.status_code == 422 and r.json()["code"] == "settlement_paid_at_future"
    r = await post("/pay", {"payment_ref": "BANK-20261105"})
    assert r.status_code == 200 and r.json()["status"] == "paid" and r.json()["payment_ref"] == "BANK-20261105"
    r = await post("/pay", {"payment_ref": "BANK-2"})
    assert r.status_code == 409 and r.json()["code"] == "settlement_already_paid"
    # a later reconciliation run never reopens a paid settlement
    await reconcile(kernel, seller.tenant_id, month, 3)
    assert (await client.get(url(month), headers=h)).json()["status"] == "paid"

    with tenant_context(seller.tenant_id):
        async with kernel.db.transaction() as db:
            actions = list((await db.execute(select(AuditEvent.action).where(
                AuditEvent.action.like("settlement.%")).order_by(AuditEvent.occurred_at))).scalars())
    assert {"settlement.reconciled", "settlement.reopened", "settlement.confirmed", "settlement.paid"} <= set(actions)


async def test_forced_confirmation_is_audited_with_its_reason(client, kernel, seller) -> None:
    month = await seed_month(kernel, seller.tenant_id, seller.account_id)
    r = await client.post(url(month, "/confirm"), json={"force": True, "reason": "渠道已书面确认"},
                          headers=seller.headers)
    assert r.status_code == 200 and r.json()["status"] == "confirmed"
    with tenant_context(seller.tenant_id):
        async with kernel.db.transaction() as db:
            data = (await db.execute(select(AuditEvent.data).where(AuditEvent.action == "settlement.confirmed"))
                    ).scalar_one()
    assert data["forced"] is True and data["reason"] == "渠道已书面确认" and data["net_due_fen"] == 9_100


async def test_current_month_cannot_be_confirmed_and_bad_input(client, kernel, seller) -> None:
    from core.db.base import utcnow

    now = utcnow()
    r = await client.post(f"{BASE}/{seller.account_id}/{now:%Y-%m}/confirm", json={"force": True, "reason": "x"},
                          headers=seller.headers)
    assert r.status_code == 409 and r.json()["code"] == "settlement_period_not_over"
    r = await client.get(f"{BASE}/{seller.account_id}/2026-1", headers=seller.headers)
    assert r.status_code == 422 and r.json()["code"] == "settlement_period_invalid"
    r = await client.get(f"{BASE}/{uuid.uuid4()}/2026-10", headers=seller.headers)
    assert r.status_code == 404 and r.json()["code"] == "settlement_account_not_found"
    r = await client.post(f"{BASE}/{seller.account_id}/2026-10/confirm", json={"force": 1.5},
                          headers=seller.headers)
    assert r.status_code in (400, 422)
    r = await client.post(f"{BASE}/{seller.account_id}/2026-10/pay", json={"payment_ref": "x", "extra": 1},
                          headers=seller.headers)
    assert r.status_code in (400, 422)


async def test_confirmed_period_is_locked_and_later_rows_go_to_the_next(client, kernel, seller) -> None:
    month = await seed_month(kernel, seller.tenant_id, seller.account_id)
    await reconcile(kernel, seller.tenant_id, month, 0)
    assert (await client.post(url(month, "/confirm"), json={}, headers=seller.headers)).status_code == 200
    l2, o2 = month.line_ids[1], month.order_ids[1]
    with tenant_context(seller.tenant_id):
        async with kernel.db.transaction() as db:
            assert (await db.execute(select(LedgerPeriod.period))).scalars().all() == ["2026-10"]
            # the channel reports a refund dated in October after October was confirmed
            written = await append(db, rows(seller.account_id, l2, o2, "refund", "ref-late", at(2026, 10, 20),
                                            channel=-250, tenant=-2_250))
            assert written == 2
            periods = set((await db.execute(select(SplitEntry.period).where(SplitEntry.event_ref == "ref-late")))
                          .scalars())
    assert periods == {"2026-11"}
    frozen = (await client.get(url(month), headers=seller.headers)).json()
    assert frozen["totals"] == EXPECTED and frozen["status"] == "confirmed"
    nov = (await client.get(f"{BASE}/{seller.account_id}/2026-11", headers=seller.headers)).json()
    assert nov["status"] == "open" and nov["totals"] == {
        "gross_fen": 0, "commission_fen": -250, "refunds_fen": 2_500, "adjustments_fen": 0, "net_due_fen": -2_250}
    lines = (await client.get(f"{BASE}/{seller.account_id}/2026-11/lines", headers=seller.headers)).json()["items"]
    assert [(ln["channel_order_id"], ln["refunds_fen"], ln["period"]) for ln in lines] == [("ORD-2", 2_500, "2026-11")]


async def test_export_xlsx_opens_with_summary_and_lines(client, kernel, seller) -> None:
    month = await seed_month(kernel, seller.tenant_id, seller.account_id)
    r = await client.get(url(month, "/export.xlsx"), headers=seller.headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
    assert "attachment" in r.headers["content-disposition"] and "2026-10" in r.headers["content-disposition"]
    book = load_workbook(io.BytesIO(r.content), read_only=True)
    assert book.sheetnames == ["Summary", "Lines"]
    summary = {row[0]: row[1] for row in book["Summary"].iter_rows(min_row=2, values_only=True)}
    assert summary["Account / 渠道账号"] == "抖音小店" and summary["Period / 期间"] == "2026-10"
    assert summary["Gross (fen) / 销售额（分）"] == 15_000 and summary["Net due (fen) / 应收（分）"] == 9_100
    assert summary["Commission (fen) / 佣金（分）"] == 1_200 and summary["Refunds (fen) / 退款（分）"] == 5_000
    lines = list(book["Lines"].iter_rows(values_only=True))
    assert lines[0][0] == "Order / 订单号" and len(lines) == 4
    assert lines[1] == ("ORD-1", "L1", "SKU-1", 2, 10_000, 500, 100, 0, 0, 4_400, 5_000, 0, 4_400, "2026-10")
    assert lines[2] == ("ORD-2", "L2", "SKU-2", 2, 5_000, 600, 0, 0, 0, 4_400, 0, 0, 4_400, "2026-10")
    assert lines[3][0] in ("", None) and lines[3][11] == 300 and lines[3][12] == 300
    assert sum(row[12] for row in lines[1:]) == 9_100


async def test_balances_by_status(client, kernel, seller) -> None:
    sep = await seed_month(kernel, seller.tenant_id, seller.account_id, 2026, 9, "SEP")
    await seed_month(kernel, seller.tenant_id, seller.account_id, 2026, 10, "OCT")  # stays open
    aug = await seed_month(kernel, seller.tenant_id, seller.account_id, 2026, 8, "AUG")
    h = seller.headers
    for month in (aug, sep):
        r = await client.post(url(month, "/confirm"), json={"force": True, "reason": "no statement"}, headers=h)
        assert r.status_code == 200
    assert (await client.post(url(aug, "/pay"), json={"payment_ref": "P-1"}, headers=h)).status_code == 200
    got = (await client.get("/api/v1/settlement-balances", headers=h)).json()
    assert got == [{
        "account_id": str(seller.account_id), "account_name": "抖音小店", "connector_id": got[0]["connector_id"],
        "open_fen": 9_100, "open_periods": 1, "confirmed_fen": 9_100, "confirmed_periods": 1,
        "paid_fen": 9_100, "paid_periods": 1,
    }]
    unknown = (await client.get("/api/v1/settlement-balances", params={"account": str(sep.order_ids[0])},
                                headers=h)).json()
    assert unknown == []
