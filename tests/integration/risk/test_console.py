"""The console "Risk control" page: rules edited with risk.manage, blocklist add/remove, refusals, flags,
lockouts lifted; read-only for roles with risk.read only; zh-CN and English."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest

from core.db.context import tenant_context
from core.risk import engine
from core.risk.gate import RiskSubject
from core.risk.services import get_rules
from tests.integration.console.conftest import text_of
from tests.integration.risk.helpers import Clock, attempt, fail_once, set_rules


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(dt.datetime(2026, 8, 3, 1, 0, tzinfo=dt.UTC))
    monkeypatch.setattr(engine, "_now", c)
    return c


async def _rules(kernel, tenant_id):
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return await get_rules(db)


async def test_owner_edits_rules_on_the_risk_page(browser, kernel, make_tenant):
    t = await make_tenant()
    await browser.console_login(t.slug, t.owner_email, t.owner_password)
    browser.http.cookies.set("lang", "en")
    page = await browser.get("/console/risk")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "Risk control" in text and "These are the default rules" in text
    assert 'href="/console/risk"' in page.text
    form = {
        "rule_count": "3",
        "action_0": "grant",
        "dimension_0": "member",
        "window_0": "month",
        "limit_0": "8",
        "active_0": "1",
        "action_1": "claim",
        "dimension_1": "member",
        "window_1": "month",
        "limit_1": "5",
        "remove_1": "1",
        "action_2": "claim",
        "dimension_2": "ip",
        "window_2": "day",
        "limit_2": "3",  # unticked: inactive
        "new_action": "transfer",
        "new_dimension": "device",
        "new_window": "day",
        "new_limit": "2",
        "failure_limit": "6",
        "window_minutes": "5",
        "lockout_minutes": "20",
        "device_member_limit": "4",
    }
    r = await browser.submit("/console/risk", "/console/risk/rules", form)
    assert r.status_code == 303, r.text
    rules = await _rules(kernel, t.id)
    assert rules.customized
    assert [(x.action, x.dimension, x.window, x.limit, x.active) for x in rules.limits] == [
        ("claim", "ip", "day", 3, False),
        ("grant", "member", "month", 8, True),
        ("transfer", "device", "day", 2, True),
    ]
    assert (
        rules.velocity.failure_limit,
        rules.velocity.window_minutes,
        rules.velocity.lockout_minutes,
        rules.device_member_limit,
    ) == (6, 5, 20, 4)
    page = await browser.get("/console/risk")
    assert "Risk rules saved." in text_of(page.text) and "default rules" not in text_of(page.text)

    bad = {**form, "rule_count": "0", "new_limit": "many"}
    r = await browser.submit("/console/risk", "/console/risk/rules", bad)
    assert r.status_code == 422 and "Enter a whole number." in text_of(r.text)
    dup = {**form, "new_action": "grant", "new_dimension": "member", "new_window": "month"}
    r = await browser.submit("/console/risk", "/console/risk/rules", dup)
    assert r.status_code == 422 and "one limit only" in text_of(r.text)
    assert (await _rules(kernel, t.id)).limits == rules.limits  # unchanged


async def test_blocklist_refusals_flags_and_lockouts_on_the_page(
    browser, kernel, settings, make_tenant, clock
):
    t = await make_tenant()
    await set_rules(kernel, t.id, ("claim", "member", "day", 1), failure_limit=2, device_member_limit=1)
    await browser.console_login(t.slug, t.owner_email, t.owner_password)
    browser.http.cookies.set("lang", "en")
    r = await browser.submit(
        "/console/risk",
        "/console/risk/blocklist",
        {"kind": "ip", "value": "172.16.0.0/12", "note": "bot farm"},
    )
    assert r.status_code == 303, r.text
    r = await browser.submit("/console/risk", "/console/risk/blocklist", {"kind": "ip", "value": "not-an-ip"})
    assert r.status_code == 422 and "Not an IP address or network" in text_of(r.text)
    r = await browser.submit(
        "/console/risk", "/console/risk/blocklist", {"kind": "phone", "value": "13900139000"}
    )
    assert r.status_code == 303
    page = (await browser.get("/console/risk")).text
    assert "172.16.0.0/12" in page and "139****9000" in page and "13900139000" not in page

    member = RiskSubject(member_id=uuid.uuid4(), device_id="tablet-0042")
    assert await attempt(kernel, settings, t.id, "claim", RiskSubject(ip="172.20.1.1")) == "blocked_ip"
    assert await attempt(kernel, settings, t.id, "claim", member) is None
    assert await attempt(kernel, settings, t.id, "claim", member) == "limit_member_day"
    await attempt(
        kernel, settings, t.id, "claim", RiskSubject(member_id=uuid.uuid4(), device_id="tablet-0042")
    )
    for _ in range(2):
        await fail_once(kernel, settings, t.id, RiskSubject(ip="198.51.100.77"))

    page = await browser.get("/console/risk")
    text = text_of(page.text)
    assert "IP on the blocklist" in text and "172.20.1.*" in text
    assert "Limit: Member per day" in text
    assert "One device, many members: tabl…42 · 2 members on 2026-08-03" in text
    assert "198.51.100.*" in text and "Locked" in text
    lift = re.search(r'action="(/console/risk/lockouts/[0-9a-f-]+/lift)"', page.text)
    assert lift
    r = await browser.submit("/console/risk", lift.group(1), {})
    assert r.status_code == 303
    assert await attempt(kernel, settings, t.id, "redeem", RiskSubject(ip="198.51.100.77")) is None
    page = await browser.get("/console/risk")
    assert "Lockout of 198.51.100.* lifted." in text_of(page.text) and "/lift" not in page.text

    remove = re.search(r'action="(/console/risk/blocklist/[0-9a-f-]+/remove)"', page.text)
    assert remove
    r = await browser.submit("/console/risk", remove.group(1), {})
    assert r.status_code == 303
    assert "Removed from the blocklist." in text_of((await browser.get("/console/risk")).text)


async def test_risk_read_only_roles_and_chinese(browser, kernel, make_tenant, make_user):
    t = await make_tenant()
    finance = await make_user(t, "finance")
    await browser.console_login(t.slug, finance.email, finance.password)
    page = await browser.get("/console/risk")  # zh-CN by default
    assert page.status_code == 200
    text = text_of(page.text)
    assert "风控" in text and "保存规则" not in text and "加入黑名单" not in text
    r = await browser.submit(
        "/console/risk",
        "/console/risk/rules",
        {
            "rule_count": "0",
            "failure_limit": "1",
            "window_minutes": "1",
            "lockout_minutes": "1",
            "device_member_limit": "1",
        },
    )
    assert r.status_code == 403
    assert not (await _rules(kernel, t.id)).customized
