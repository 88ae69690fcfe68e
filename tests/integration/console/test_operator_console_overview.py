"""The operator console as an operator in China expects it: times in the operator's own time zone (a profile
setting, default Asia/Shanghai), plans by their display names (editable, Chinese and English), and a bad
tenant slug that says what is allowed — in the console form and in the platform API's problem+json."""

from __future__ import annotations

import datetime as dt
import secrets
import zoneinfo
from typing import Any

import pytest

from tenants.onboarding import SLUG_RULE_EN, SLUG_RULE_ZH
from tests.integration.console.conftest import Browser, browser, text_of  # noqa: F401


@pytest.fixture
async def op_browser(kernel: Any, browser: Browser) -> Browser:  # noqa: F811
    """A fresh operator (its own time zone setting) logged in."""
    from tenants.onboarding import ensure_default_plans
    from tenants.operators import create_operator

    email = f"op-{secrets.token_hex(4)}@example.com"
    async with kernel.db.transaction() as db:
        await ensure_default_plans(db)
        await create_operator(db, email, "operator-password-1", name="小王")
    r = await browser.operator_login(email, "operator-password-1")
    assert r.status_code == 303
    return browser


async def test_times_are_in_the_operators_zone_and_editable(op_browser: Browser, make_tenant: Any) -> None:
    tenant = await make_tenant()
    page = await op_browser.get(f"/platform/tenants/{tenant.id}")
    assert "UTC" not in text_of(page.text) and "Asia/Shanghai" in page.text  # the default zone, named
    profile = await op_browser.get("/platform/profile")
    assert profile.status_code == 200 and 'value="Asia/Shanghai"' in profile.text
    r = await op_browser.submit("/platform/profile", "/platform/profile", {"name": "小王", "timezone": "Mars/Base"})
    assert r.status_code == 422 and "未知时区" in text_of(r.text)
    r = await op_browser.submit("/platform/profile", "/platform/profile",
                                {"name": "小王", "timezone": "America/New_York"})
    assert r.status_code == 303
    listing = await op_browser.get("/platform/tenants")
    row = listing.text.split(f'<tr data-tenant="{tenant.slug}">', 1)[1].split("</tr>", 1)[0]
    shown = text_of(row).split()[-2:]  # the created time: YYYY-MM-DD HH:MM in New York
    created = dt.datetime.strptime(" ".join(shown), "%Y-%m-%d %H:%M").replace(
        tzinfo=zoneinfo.ZoneInfo("America/New_York"))
    assert abs((created - dt.datetime.now(dt.UTC)).total_seconds()) < 600
    assert "America/New_York" in listing.text


async def test_plans_are_shown_and_edited_by_display_name(op_browser: Browser, client: Any,
                                                          operator: Any, make_tenant: Any) -> None:
    code = f"p{secrets.token_hex(3)}"
    r = await client.post("/api/platform/v1/plans", headers=operator.headers,
                          json={"code": code, "name": "Pro", "name_zh": "专业版", "allowed_connectors": ["*"]})
    assert r.status_code == 201, r.text
    assert r.json()["name_zh"] == "专业版"
    tenant = await make_tenant(plan=code)
    listing = await op_browser.get("/platform/tenants")
    row = listing.text.split(f'<tr data-tenant="{tenant.slug}">', 1)[1].split("</tr>", 1)[0]
    assert "专业版" in row and f">{code}<" not in row
    r = await op_browser.submit("/platform/plans", f"/platform/plans/{code}/names", {"name": "Pro+", "name_zh": "专业增强版"})
    assert r.status_code == 303
    plans = await op_browser.get("/platform/plans")
    row = plans.text.split(f'<tr data-plan="{code}">', 1)[1].split("</tr>", 1)[0]
    assert "专业增强版" in row and 'value="Pro+"' in row
    r = await op_browser.submit("/platform/plans", f"/platform/plans/{code}/names", {"name": " ", "name_zh": ""})
    assert r.status_code == 422
    built_in = await op_browser.get("/platform/plans")
    assert "入门版" in built_in.text and "成长版" in built_in.text
    await op_browser.get("/console/lang?to=en&next=/platform/plans")
    english = await op_browser.get("/platform/plans")
    assert "Starter" in english.text and "Pro+" in english.text


async def test_bad_slug_states_the_rule(op_browser: Browser, client: Any, operator: Any) -> None:
    body = {"name": "Bad", "slug": "Bad_Slug", "owner_email": "o@bad.example.com"}
    r = await client.post("/api/platform/v1/tenants", headers=operator.headers, json=body)
    problem = r.json()
    assert r.status_code == 422 and problem["code"] == "validation_failed"
    assert problem["errors"] == [{"field": "slug", "message": SLUG_RULE_EN, "code": "invalid_slug"}]
    assert SLUG_RULE_ZH in problem["detail"]
    for bad in ("ab", "-abc", "abc-", "a" * 41, "中文商户"):
        r = await client.post("/api/platform/v1/tenants", headers=operator.headers, json={**body, "slug": bad})
        assert r.status_code == 422 and r.json()["errors"][0]["code"] == "invalid_slug", bad
    form = await op_browser.get("/platform/tenants/new")
    assert "以字母或数字开头和结尾" in text_of(form.text)
