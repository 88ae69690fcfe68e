"""KPI figures of the seeded scenario (tests/integration/kpis/scenario.py), checked to the fen by hand, through
the service and ``/api/v1/kpis``; breakage by age; the window parameter; complaints through their API."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import pytest

from core.db.context import tenant_context
from core.kpis import queries
from tests.integration.kpis.scenario import Scenario, seed


@pytest.fixture
async def scenario(kernel: Any, make_tenant: Any) -> Scenario:
    tenant = await make_tenant()
    return await seed(kernel, tenant.id)


async def _report(kernel: Any, sc: Scenario, days: int = 30) -> Any:
    with tenant_context(sc.tenant_id):
        async with kernel.db.transaction() as db:
            return await queries.kpis(db, days)


def _ratio(r: Any) -> tuple[int, int, bool]:
    return (r.numerator, r.denominator, r.flagged)


async def test_thirty_day_kpis_per_channel_and_overall_to_the_fen(kernel: Any, scenario: Scenario) -> None:
    report = await _report(kernel, scenario)
    a, b = report.channels
    assert (a.account_id, b.account_id) == (scenario.shop_a.account_id, scenario.shop_b.account_id)
    # shop A: A1 and A2 (A3 is 40 days old, A4 refused)
    assert (a.orders, a.units, a.gross_fen, a.refunded_fen, a.net_fen, a.refunded_orders) == (2, 5, 5000, 1000, 4000, 1)
    assert a.split_cost_fen == 300 + 60 + 200 - 100 and _ratio(a.split_cost) == (460, 4000, False)
    assert a.split_cost.value == 0.115
    assert _ratio(a.refund_rate) == (1000, 5000, True)
    assert (a.complained_orders, _ratio(a.complaint_rate)) == (1, (1, 2, True))
    assert (a.codes_sold, a.codes_delivered, a.codes_redeemed) == (4, 4, 1)
    assert _ratio(a.redemption_rate) == (1, 4, False)
    assert (a.cost_of_sold_fen, a.tenant_net_fen, a.margin_fen) == (2400, 2640 + 1800 - 900, 3540 - 2400)
    assert _ratio(a.margin) == (1140, 4000, False)
    # stock of P: 20 codes less 7 sold (c4 returned) → 13 × 600
    assert a.stock_value_fen == 7800
    assert _ratio(a.turnover) == (2400 * 365 // 30, 7800, False)  # 3.74 a year
    # shop B: B1 only
    assert (b.orders, b.units, b.gross_fen, b.net_fen) == (1, 1, 5000, 5000)
    assert _ratio(b.split_cost) == (1000, 5000, True)  # 20% > 15%
    assert _ratio(b.refund_rate) == (0, 5000, False)
    assert _ratio(b.complaint_rate) == (1, 1, True)
    assert _ratio(b.redemption_rate) == (0, 1, False)
    assert (b.cost_of_sold_fen, b.tenant_net_fen, b.margin_fen, b.stock_value_fen) == (2000, 4000, 2000, 18000)
    assert _ratio(b.turnover) == (2000 * 365 // 30, 18000, True)  # 1.35 a year < 3
    # overall: sums, and the whole stock
    o = report.overall
    assert o.account_id is None
    assert (o.orders, o.units, o.gross_fen, o.refunded_fen, o.net_fen) == (3, 6, 10000, 1000, 9000)
    assert _ratio(o.split_cost) == (1460, 9000, True)  # 16.2%
    assert _ratio(o.refund_rate) == (1000, 10000, True)
    assert _ratio(o.complaint_rate) == (2, 3, True)
    assert _ratio(o.redemption_rate) == (1, 5, False)
    assert (o.cost_of_sold_fen, o.tenant_net_fen, o.margin_fen) == (4400, 7540, 3140)
    assert _ratio(o.turnover) == (4400 * 365 // 30, 25800, True)


async def test_daily_series_in_the_tenant_zone(kernel: Any, scenario: Scenario) -> None:
    report = await _report(kernel, scenario, 7)
    zone = zoneinfo.ZoneInfo(report.timezone)
    days = [p.day for p in report.overall.daily]
    today = scenario.now.astimezone(zone).date()
    assert days == [(today - dt.timedelta(days=6 - i)).isoformat() for i in range(7)]
    a = {p.day: p for p in report.channels[0].daily}
    a1 = scenario.placed["A1"].astimezone(zone).date().isoformat()
    a2 = scenario.placed["A2"].astimezone(zone).date().isoformat()
    assert (a[a1].orders, a[a1].gross_fen, a[a1].net_fen) == (1, 3000, 3000)
    assert (a[a2].orders, a[a2].gross_fen, a[a2].net_fen) == (1, 2000, 1000)
    assert sum(p.gross_fen for p in report.overall.daily) == report.overall.gross_fen == 10000
    assert report.until - report.since == dt.timedelta(days=7)
    assert report.since.astimezone(zone).time() == dt.time(0, 0)


async def test_longer_windows_take_older_orders(kernel: Any, scenario: Scenario) -> None:
    ninety = (await _report(kernel, scenario, 90)).channels[0]
    assert (ninety.orders, ninety.gross_fen, ninety.split_cost_fen) == (3, 6000, 560)
    year = (await _report(kernel, scenario, 365)).channels[0]
    assert (year.orders, year.gross_fen, year.codes_sold) == (5, 7600, 7)


async def test_breakage_by_age_and_expiry(kernel: Any, scenario: Scenario) -> None:
    with tenant_context(scenario.tenant_id):
        async with kernel.db.transaction() as db:
            report = await queries.breakage(db)
    a, b = report.channels
    assert [(x.bucket, x.codes, x.value_fen) for x in a.buckets] == [
        ("0-30", 3, 3000 * 2 // 3 + 2000 * 1 // 2), ("31-90", 1, 1000), ("91-180", 1, 900), ("180+", 1, 700),
        ("expired", 0, 0)]
    assert (a.codes, a.value_fen) == (6, 5600)
    assert [(x.bucket, x.codes, x.value_fen) for x in b.buckets][-1] == ("expired", 1, 5000)
    assert (b.codes, b.value_fen) == (1, 5000)
    assert (report.overall.codes, report.overall.value_fen) == (7, 10600)


async def test_kpis_api(client: Any, kernel: Any, make_tenant: Any, make_api_client: Any) -> None:
    tenant = await make_tenant()
    sc = await seed(kernel, tenant.id)
    creds = await make_api_client(tenant)
    r = await client.get("/api/v1/kpis", params={"days": 30}, headers=creds.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["window_days"] == 30 and body["thresholds"]["split_cost_above_bp"] == 1500
    assert body["overall"]["net_fen"] == 9000 and body["overall"]["split_cost"]["flagged"] is True
    assert [c["account_id"] for c in body["channels"]] == [str(sc.shop_a.account_id), str(sc.shop_b.account_id)]
    assert len(body["channels"][1]["daily"]) == 30
    r = await client.get("/api/v1/kpis", params={"days": 31}, headers=creds.headers)
    assert r.status_code == 422 and r.json()["code"] == "kpi_window_unknown"
    r = await client.get("/api/v1/kpis", params={"days": "1.5"}, headers=creds.headers)
    assert r.status_code == 400 or r.status_code == 422
    r = await client.get("/api/v1/kpis/breakage", headers=creds.headers)
    assert r.status_code == 200 and r.json()["overall"]["value_fen"] == 10600
    narrow = await make_api_client(tenant, ["channel_orders:read"])
    assert (await client.get("/api/v1/kpis", headers=narrow.headers)).status_code == 403
    assert (await client.get("/api/v1/kpis/breakage", headers=narrow.headers)).status_code == 403


async def test_complaints_api(client: Any, kernel: Any, make_tenant: Any, make_api_client: Any) -> None:
    tenant = await make_tenant()
    sc = await seed(kernel, tenant.id)
    creds = await make_api_client(tenant)
    order = sc.orders["A2"]
    url = f"/api/v1/channel-orders/{order}/complaints"
    r = await client.post(url, json={"category": "delivery", "note": "没收到券码"}, headers=creds.headers)
    assert r.status_code == 201, r.text
    assert r.json()["category"] == "delivery" and r.json()["source"] == "manual"
    listed = (await client.get(url, headers=creds.headers)).json()
    assert [c["note"] for c in listed] == ["没收到券码"]
    r = await client.post(url, json={"category": "bogus"}, headers=creds.headers)
    assert r.status_code in (400, 422)
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    r = await client.post(url, json={"category": "other", "occurred_at": future}, headers=creds.headers)
    assert r.status_code == 422 and r.json()["code"] == "complaint_time_invalid"
    r = await client.post(url, json={"category": "other", "note": "x" * 501}, headers=creds.headers)
    assert r.status_code in (400, 422)
    r = await client.post("/api/v1/channel-orders/00000000-0000-7000-8000-000000000000/complaints",
                          json={"category": "other"}, headers=creds.headers)
    assert r.status_code == 404 and r.json()["code"] == "channel_order_not_found"
    assert len((await client.get(url, headers=creds.headers)).json()) == 1  # nothing half-written
    # the complaint counts: A2 joins A1 among A's complained orders
    report = await _report(kernel, sc)
    assert (report.channels[0].complained_orders, report.channels[0].orders) == (2, 2)
    reader = await make_api_client(tenant, ["channel_orders:read"])
    assert (await client.post(url, json={"category": "other"}, headers=reader.headers)).status_code == 403
