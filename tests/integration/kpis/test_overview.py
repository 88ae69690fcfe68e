"""The console overview (数据概览) and the campaign funnel, with data made through the services and the member
pages: today's and this week's figures, per-day trends grouped in the tenant's zone (PostgreSQL's
``date_trunc`` and SQLite's day-boundary join), the channel sales of the KPI scenario, links opened once per
token and campaign pages once per visitor, and the page that shows it all by role."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Any

import pytest
from sqlalchemy import select, update

from core.campaigns.funnel import campaign_funnel
from core.db.base import utcnow
from core.errors import DomainError
from core.grants.models import Grant, GrantItem
from core.kpis import overview
from core.kpis.queries import day_bounds
from tests.integration.claims.conftest import phones  # noqa: F401
from tests.integration.claims.helpers import Shop, random_phone, text_of
from tests.integration.console.conftest import Browser, browser  # noqa: F401
from tests.integration.kpis.scenario import seed

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def tenant(make_tenant: Any) -> Any:
    return await make_tenant(plan="growth")


@pytest.fixture
async def shop(client: Any, kernel: Any, tenant: Any, make_api_client: Any) -> Shop:
    creds = await make_api_client(tenant)
    return Shop(tenant.id, kernel, client, creds.headers)


@pytest.fixture
async def owner(browser: Browser, tenant: Any) -> Browser:  # noqa: F811
    r = await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    assert r.status_code in (200, 303)
    return browser


async def _campaign(shop: Shop, stocked: Any) -> dict[str, Any]:
    r = await shop.post("/api/v1/campaigns", {"name": "新人礼", "product_id": str(stocked.product_id),
                                              "per_member_limit": 1})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _redeem_grant(shop: Shop, stocked: Any, grant_id: uuid.UUID) -> None:
    """Redeem the code of ``grant_id`` through the API, as a till would."""
    code_id = await shop.run(lambda db: db.scalar(select(GrantItem.code_id).where(GrantItem.grant_id == grant_id)))
    number = stocked.numbers[stocked.code_ids.index(code_id)]
    r = await shop.post("/api/v1/redemptions", {"code": number, "store": "一号店"})
    assert r.status_code == 201, r.text


@pytest.fixture
async def funnel_data(shop: Shop, phones: Any) -> dict[str, Any]:  # noqa: F811
    """A campaign reached two ways: its public page (two visitors, one of them three times; one claim, then
    redeemed) and two personal links of grants tagged with its ref (one opened twice and confirmed)."""
    stocked = await shop.stock(6, with_pin=False, unit_cost=700)
    campaign = await _campaign(shop, stocked)
    first, second = phones(ip="10.0.0.1"), phones(ip="10.0.0.2")
    for _ in range(3):
        assert (await first.get(campaign["path"])).status_code == 200
    assert (await second.get(campaign["path"])).status_code == 200
    from core.campaigns import services

    claimed = await shop.run(lambda db: services.claim(db, shop.kernel, uuid.UUID(campaign["id"]), random_phone()))
    await _redeem_grant(shop, stocked, claimed.id)
    links = []
    for _ in range(2):
        grant = await shop.grant(stocked.product_id, campaign_ref=campaign["ref"])
        links.append(await shop.claim_link(grant["id"]))
    member = phones(ip="10.0.0.3")
    assert (await member.get(links[0]["path"])).status_code == 200
    number = random_phone()
    r = await member.submit(links[0]["path"], f"{links[0]['path']}/send", {"phone": number})
    assert r.status_code == 303, text_of(r.text)
    r = await member.submit(links[0]["path"], f"{links[0]['path']}/verify", {"code": await shop.otp_for(number)})
    assert r.status_code == 303, text_of(r.text)
    return {"campaign": campaign, "stocked": stocked}


async def test_campaign_funnel_counts_each_step_once(shop: Shop, funnel_data: dict[str, Any]) -> None:
    c = funnel_data["campaign"]
    found = await shop.run(lambda db: campaign_funnel(db, uuid.UUID(c["id"]), c["ref"]))
    assert (found.links_sent, found.links_opened, found.links_claimed) == (2, 1, 1)
    assert (found.page_visitors, found.page_claims, found.grants_redeemed) == (2, 1, 1)
    steps = [(s.step, s.count, s.rate_bp) for s in found.steps]
    # opened: 1 of 2 links (visitors of the public page were sent nothing); claimed 2 of 3; redeemed 1 of 2
    assert steps == [("sent", 2, None), ("opened", 3, 5000), ("claimed", 2, 6667), ("redeemed", 1, 5000)]


async def test_campaign_page_shows_the_funnel(funnel_data: dict[str, Any], owner: Browser) -> None:
    c = funnel_data["campaign"]
    page = await owner.get(f"/console/campaigns/{c['id']}")
    assert page.status_code == 200
    chart = page.text.split('id="chart-funnel"', 1)[1].split("</svg>", 1)[0]
    assert chart.count("<rect") == 4 and "<title" in chart
    assert "活动转化漏斗" in text_of(page.text)
    for step, count, rate in (("sent", 2, "—"), ("opened", 3, "50.00%"), ("claimed", 2, "66.67%"),
                              ("redeemed", 1, "50.00%")):
        row = page.text.split(f'<tr data-step="{step}"', 1)[1].split("</tr>", 1)[0]
        assert f"data-count>{count}<" in row and f"data-rate>{rate}<" in row, (step, row)


async def test_overview_page_links_each_figure_to_its_list(funnel_data: dict[str, Any], owner: Browser) -> None:
    page = await owner.get("/console")
    assert page.status_code == 200
    html, text = page.text, text_of(page.text)
    assert "数据概览" in text and "data-empty-state" not in html
    today = utcnow().astimezone(SHANGHAI).date().isoformat()
    grants = html.split('data-figure="grants"', 1)[1].split("</section>", 1)[0]
    assert f'href="/console/grants?from={today}&amp;to={today}" data-today>3<' in grants
    listed = await owner.get(f"/console/grants?from={today}&to={today}")
    assert listed.status_code == 200 and listed.text.count("<tr data-grant=") == 3
    earlier = (utcnow().astimezone(SHANGHAI).date() - dt.timedelta(days=1)).isoformat()
    none = await owner.get(f"/console/grants?from={earlier}&to={earlier}")
    assert none.text.count("<tr data-grant=") == 0
    assert 'href="/console/stock" data-value>¥21.00<' in html
    redeemed = html.split('data-figure="redemptions"', 1)[1].split("</section>", 1)[0]
    assert f'href="/console/reports/redemptions?from={today}&amp;to={today}" data-today>1<' in redeemed
    report = await owner.get(f"/console/reports/redemptions?from={today}&to={today}")
    assert report.status_code == 200 and "一号店" in text_of(report.text)
    sales = html.split('data-figure="channel_sales"', 1)[1].split("</section>", 1)[0]
    assert f'href="/console/channel-orders?from={today}&amp;to={today}" data-today>' in sales
    orders = await owner.get(f"/console/channel-orders?from={today}&to={today}")
    assert orders.status_code == 200 and f"下单于 {today} – {today}" in text_of(orders.text)
    chart = html.split('id="chart-activity"', 1)[1].split("</svg>", 1)[0]
    assert chart.count("<circle") == 2 * 14 and "<title" in chart and 'viewBox="0 0 640 220"' in html
    r = await owner.get("/console", params={"days": "30"})
    chart = r.text.split('id="chart-activity"', 1)[1].split("</svg>", 1)[0]
    assert chart.count("<circle") == 2 * 30
    assert (await owner.get("/console", params={"days": "9"})).status_code == 422


async def test_overview_hides_what_the_role_cannot_read(owner: Browser, shop: Shop,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A role without ``inventory.read`` and ``channel_orders.read`` (as the clerk role will be) sees no stock
    value, expiry or channel sales, and no sales chart."""
    import admin_ui.overview_pages as pages
    from tenants.scopes import role_can

    await shop.stock(2, unit_cost=300)
    denied = {"inventory.read", "channel_orders.read"}
    monkeypatch.setattr(pages, "role_can", lambda role, perm: perm not in denied and role_can(role, perm))
    html = (await owner.get("/console")).text
    assert 'data-figure="grants"' in html
    for hidden in ('data-figure="stock_value"', 'data-figure="expiring"', 'data-figure="channel_sales"',
                   'id="chart-sales"', "¥6.00"):
        assert hidden not in html, hidden


async def test_empty_tenant_sees_next_steps(owner: Browser) -> None:
    page = await owner.get("/console")
    html = page.text
    assert page.status_code == 200 and "data-empty-state" in html
    for step, href in (("product", "/console/products/new"), ("codes", "/console/imports/new"),
                       ("campaign", "/console/campaigns")):
        item = html.split(f'data-step="{step}"', 1)[1].split("</li>", 1)[0]
        assert f'href="{href}"' in item


async def test_overview_today_week_and_rate(shop: Shop, funnel_data: dict[str, Any]) -> None:
    report = await shop.run(lambda db: overview.overview(db))
    t, w = report.today, report.week
    # today: the campaign claim's grant and the two tagged grants; claims: one link confirmed, one page claim
    assert (t.grants, t.claims, t.redemptions) == (3, 2, 1)
    assert (w.grants, w.claims, w.redemptions) == (3, 2, 1)
    assert (t.redemption_rate.numerator, t.redemption_rate.denominator) == (1, 3)
    # stock: 6 codes at ¥7.00, 3 handed out
    assert report.stock_value_fen == 3 * 700 and report.expiring_codes == 0
    assert report.setup.products == 1 and report.setup.campaigns == 1 and not report.setup.empty
    today = report.trend[-1]
    assert len(report.trend) == 14 and (today.grants, today.redemptions) == (3, 1)
    assert sum(d.grants for d in report.trend) == 3


async def test_days_are_the_tenant_zone_days(shop: Shop) -> None:
    """A grant at 00:30 Shanghai time (16:30 UTC the day before) counts on the Shanghai day, in SQL, on
    both backends; one at 23:30 Shanghai on that same day too."""
    stocked = await shop.stock(3, with_pin=False)
    now = utcnow()
    local_day = now.astimezone(SHANGHAI).date() - dt.timedelta(days=3)
    moments = [dt.datetime.combine(local_day, dt.time(0, 30), tzinfo=SHANGHAI),
               dt.datetime.combine(local_day, dt.time(23, 30), tzinfo=SHANGHAI),
               dt.datetime.combine(local_day - dt.timedelta(days=1), dt.time(23, 59), tzinfo=SHANGHAI)]
    for moment in moments:
        grant = await shop.grant(stocked.product_id)

        async def backdate(db: Any, gid: str = grant["id"], at: dt.datetime = moment) -> None:
            await db.execute(update(Grant).where(Grant.id == uuid.UUID(gid)).values(created_at=at.astimezone(dt.UTC)))

        await shop.run(backdate)
    report = await shop.run(lambda db: overview.overview(db, days=30))
    by_day = {d.day: d.grants for d in report.trend}
    assert len(report.trend) == 30
    assert by_day[local_day.isoformat()] == 2
    assert by_day[(local_day - dt.timedelta(days=1)).isoformat()] == 1
    assert report.today.grants == 0


async def test_channel_sales_of_the_kpi_scenario(shop: Shop) -> None:
    """B1 (¥50, yesterday), A1 (¥30, 2 days ago), A2 (¥20 less ¥10 refunded, 5 days ago); A4 was refused."""
    sc = await seed(shop.kernel, shop.id)
    report = await shop.run(lambda db: overview.overview(db, days=14, now=sc.now))
    by_day = {d.day: (d.channel_orders, d.channel_net_fen) for d in report.trend}
    local = sc.now.astimezone(SHANGHAI).date()
    assert by_day[(local - dt.timedelta(days=1)).isoformat()] == (1, 5000)
    assert by_day[(local - dt.timedelta(days=2)).isoformat()] == (1, 3000)
    assert by_day[(local - dt.timedelta(days=5)).isoformat()] == (1, 1000)
    assert sum(n for n, _ in by_day.values()) == 3  # A3 is 40 days old, A4 refused
    assert (report.today.channel_orders, report.today.channel_net_fen) == (0, 0)
    week_days = {d for d, _, _ in day_bounds(sc.now, "Asia/Shanghai", sc.now.astimezone(SHANGHAI).weekday() + 1)}
    assert report.week.channel_net_fen == sum(v for d, (_, v) in by_day.items() if d in week_days)
    # stock of the scenario: P 13 × ¥6 + Q 9 × ¥20
    assert report.stock_value_fen == 13 * 600 + 9 * 2000


async def test_only_the_sections_asked_for(shop: Shop) -> None:
    await shop.stock(2, unit_cost=300, expiries=[utcnow() + dt.timedelta(days=10), utcnow() + dt.timedelta(days=40)])
    report = await shop.run(lambda db: overview.overview(db, ["stock"]))
    assert report.sections == ["stock"] and report.stock_value_fen == 600
    assert (report.expiring_codes, report.expiring_value_fen) == (1, 300)
    assert all(d.grants == 0 and d.channel_net_fen == 0 for d in report.trend)
    with pytest.raises(DomainError) as bad:
        await shop.run(lambda db: overview.overview(db, days=7))
    assert bad.value.code == "overview_window_unknown"


async def test_empty_tenant(shop: Shop) -> None:
    report = await shop.run(lambda db: overview.overview(db))
    assert report.setup.empty and report.stock_value_fen == 0 and report.today.grants == 0
    assert [d.grants for d in report.trend] == [0] * 14


async def test_channel_orders_list_by_the_day_they_were_placed(shop: Shop) -> None:
    """The overview's sales figure links to the orders of its days: ``list_orders`` bounds ``placed_at``."""
    from core.channel_orders.queries import list_orders

    sc = await seed(shop.kernel, shop.id)
    local = sc.now.astimezone(SHANGHAI).date()
    yesterday = local - dt.timedelta(days=1)
    since = dt.datetime.combine(yesterday, dt.time(), SHANGHAI).astimezone(dt.UTC)
    until = since + dt.timedelta(days=1)
    page = await shop.run(lambda db: list_orders(db, placed_since=since, placed_until=until))
    assert [o.channel_order_id for o in page.items] == ["B1"]
    older = await shop.run(lambda db: list_orders(db, placed_until=since))
    assert {o.channel_order_id for o in older.items} >= {"A1", "A2", "A3"} and "B1" not in {
        o.channel_order_id for o in older.items
    }
