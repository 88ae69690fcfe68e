"""Operator console (onboarding, suspend/resume, plans) and tenant pages (users, API clients, audit)."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import text

from tests.conftest import unique
from tests.integration.console.conftest import csrf_of, text_of

INVITE = re.compile(r"https?://[^\s\"<]+/console/invite/kqi_[A-Za-z0-9_-]+")
SECRET = re.compile(r"kqs_[A-Za-z0-9_-]+")


async def test_operator_console_onboards_and_shows_the_invite_once(browser, operator, client):
    assert (await browser.get("/platform/tenants")).status_code == 303
    r = await browser.operator_login(operator.email, "wrong-password-1")
    assert r.status_code == 401 and "邮箱或密码错误" in r.text
    r = await browser.operator_login(operator.email, operator.password)
    assert r.status_code == 303 and r.headers["location"] == "/platform/tenants"

    form = await browser.get("/platform/tenants/new")
    assert 'value="Asia/Shanghai"' in form.text and 'value="CNY"' in form.text and "starter" in form.text
    slug = unique("shop-")
    fields = {
        "name": "Coffee & Co",
        "slug": slug,
        "plan": "growth",
        "timezone": "Asia/Shanghai",
        "currency": "CNY",
        "owner_email": f"boss@{slug}.example.com",
        "locale": "zh-CN",
    }
    r = await browser.submit("/platform/tenants/new", "/platform/tenants", fields)
    assert r.status_code == 200, r.text
    links = INVITE.findall(r.text)
    assert links and "Coffee &amp; Co" in r.text
    token = links[0].rsplit("/", 1)[1]

    listing = await browser.get("/platform/tenants")
    assert slug in listing.text and "正常" in listing.text
    tenant_id = re.search(
        rf'data-tenant="{slug}">\s*<td><a href="/platform/tenants/([0-9a-f-]+)"', listing.text
    )
    assert tenant_id
    detail = await browser.get(f"/platform/tenants/{tenant_id.group(1)}")
    assert detail.status_code == 200 and "growth" in detail.text
    for page in (listing, detail):
        assert token not in page.text  # shown once, on the result page only

    again = await browser.submit("/platform/tenants/new", "/platform/tenants", fields)
    assert again.status_code == 409 and f"标识 '{slug}' 已被占用" in text_of(again.text)
    assert not INVITE.search(again.text)


async def test_operator_form_errors_are_shown_next_to_the_form(browser, operator):
    await browser.operator_login(operator.email, operator.password)
    base = {
        "name": "Bad",
        "slug": "Not A Slug",
        "plan": "starter",
        "timezone": "Asia/Shanghai",
        "currency": "CNY",
        "owner_email": "owner@example.com",
        "locale": "zh-CN",
    }
    r = await browser.submit("/platform/tenants/new", "/platform/tenants", base)
    # the message states the rule (it used to say only "check the slug field")
    assert r.status_code == 422 and 'value="Not A Slug"' in r.text
    assert "3–40 位，只能包含小写字母 a–z、数字和连字符（-），以字母或数字开头和结尾" in text_of(r.text)
    r = await browser.submit(
        "/platform/tenants/new", "/platform/tenants", {**base, "slug": unique("ok-"), "timezone": "Mars/Base"}
    )
    assert r.status_code == 422 and "未知时区" in text_of(r.text)
    r = await browser.submit(
        "/platform/tenants/new", "/platform/tenants", {**base, "slug": unique("ok-"), "plan": "platinum"}
    )
    assert r.status_code == 422 and "未知套餐" in text_of(r.text)
    listing = await browser.get("/platform/tenants")
    assert "Bad</strong>" not in listing.text  # nothing half-created


async def test_operator_suspends_and_resumes_with_a_reason(browser, operator, make_tenant, new_browser):
    tenant = await make_tenant()
    await browser.operator_login(operator.email, operator.password)
    url = f"/platform/tenants/{tenant.id}"
    r = await browser.submit(url, f"{url}/suspend", {"reason": "invoice 42 unpaid"})
    assert r.status_code == 303 and r.headers["location"] == url
    page = await browser.get(url)
    assert "已暂停" in page.text and "invoice 42 unpaid" in page.text and "已暂停。" in page.text

    owner = new_browser()
    r = await owner.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    assert r.status_code == 403

    r = await browser.submit(url, f"{url}/resume", {"reason": "paid"})
    assert r.status_code == 303
    assert "租户 " in (await browser.get(url)).text
    r = await owner.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    assert r.status_code == 303
    assert (await browser.get("/platform/tenants/00000000-0000-0000-0000-000000000000")).status_code == 404


async def test_plans_page_and_realms_are_separate(browser, operator, make_tenant):
    tenant = await make_tenant()
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    r = await browser.get("/platform/plans")
    assert r.status_code == 303 and r.headers["location"].startswith("/platform/login")
    await browser.operator_login(operator.email, operator.password)
    plans = await browser.get("/platform/plans")
    assert (
        plans.status_code == 200
        and 'data-plan="starter"' in plans.text
        and 'data-plan="growth"' in plans.text
    )
    assert (await browser.get("/console")).status_code == 303  # the operator session is not a tenant user


async def test_users_page_invite_change_role_disable(browser, new_browser, make_tenant):
    tenant = await make_tenant()
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    email = f"clerk@{tenant.slug}.example.com"
    r = await browser.submit(
        "/console/users", "/console/users", {"email": email, "name": "Clerk", "role": "operator"}
    )
    assert r.status_code == 200
    link = INVITE.search(r.text)
    assert link and email in r.text
    page = await browser.get("/console/users")
    assert link.group(0).rsplit("/", 1)[1] not in page.text and "已邀请" in page.text

    dup = await browser.submit("/console/users", "/console/users", {"email": email, "role": "viewer"})
    assert dup.status_code == 409 and f"邮箱 {email} 的用户已存在" in dup.text
    bad = await browser.submit("/console/users", "/console/users", {"email": "nope", "role": "viewer"})
    assert bad.status_code == 422 and "电子邮箱地址无效" in text_of(bad.text)
    bad = await browser.submit("/console/users", "/console/users", {"email": "a@example.com", "role": "god"})
    assert bad.status_code == 422 and "请检查“角色”一栏" in bad.text

    rows = dict(re.findall(r'<tr data-user="([^"]+)">.*?/console/users/([0-9a-f-]+)/role', page.text, re.S))
    clerk_id, owner_id = rows[email], rows[tenant.owner_email]
    r = await browser.submit("/console/users", f"/console/users/{clerk_id}/role", {"role": "finance"})
    assert r.status_code == 303
    page = await browser.get("/console/users")
    assert f"{email} 的角色已改为 财务" in page.text

    r = await browser.submit("/console/users", f"/console/users/{owner_id}/role", {"role": "viewer"})
    assert r.status_code == 409 and "租户至少需要保留一名所有者" in r.text
    r = await browser.submit("/console/users", f"/console/users/{owner_id}/disable", {})
    assert r.status_code == 409 and "租户至少需要保留一名所有者" in r.text

    r = await browser.submit("/console/users", f"/console/users/{clerk_id}/disable", {})
    assert r.status_code == 303
    page = await browser.get("/console/users")
    assert f"{email} 已无法登录" in page.text and "已停用" in page.text


async def test_clients_page_shows_the_secret_once_and_revokes(browser, client, make_tenant):
    tenant = await make_tenant()
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    page = await browser.get("/console/clients")
    assert "读取租户资料、套餐和配额。" in page.text and 'value="audit:read"' in page.text

    r = await browser.submit("/console/clients", "/console/clients", {"name": "POS", "scopes": []})
    assert r.status_code == 422 and "权限范围无效或未选择" in r.text
    r = await browser.submit(
        "/console/clients", "/console/clients", {"name": "POS", "scopes": ["tenant:read", "audit:read"]}
    )
    assert r.status_code == 200
    secret = SECRET.search(r.text)
    client_id = re.search(r"kqc_[A-Za-z0-9_-]+", r.text)
    assert secret and client_id
    listing = await browser.get("/console/clients")
    assert secret.group(0) not in listing.text and client_id.group(0) in listing.text

    token = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id.group(0), secret.group(0))
    )
    assert token.status_code == 200
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert (await client.get("/api/v1/tenant", headers=bearer)).status_code == 200

    pk = re.search(r'action="/console/clients/([0-9a-f-]+)/revoke"', listing.text)
    assert pk
    r = await browser.submit("/console/clients", f"/console/clients/{pk.group(1)}/revoke", {})
    assert r.status_code == 303
    listing = await browser.get("/console/clients")
    assert "API 客户端 POS 已吊销" in listing.text and "已吊销" in listing.text
    assert (await client.get("/api/v1/tenant", headers=bearer)).status_code == 401


async def test_audit_page_lists_events_and_verifies_the_chain(browser, make_tenant):
    tenant = await make_tenant()
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    page = await browser.get("/console/audit")
    assert page.status_code == 200
    for action in ("tenant.created", "user.invited", "user.activated", "user.logged_in"):
        assert action in page.text
    assert tenant.owner_email in page.text  # the actor is shown by e-mail
    r = await browser.http.post("/console/audit/verify", data={"_csrf_token": csrf_of(page.text)})
    assert r.status_code == 200 and 'data-report="ok"' in r.text and "审计链完整" in r.text
    assert "<th>区块</th>" in r.text and "<th>哈希</th>" not in r.text  # each event shows its block, no hash
    older = re.search(r'href="/console/audit\?before=([0-9a-f-]{36})"', page.text)
    if older:  # more than a page of events
        assert (await browser.get(f"/console/audit?before={older.group(1)}")).status_code == 200
    assert (await browser.get(f"/console/audit?before={uuid.uuid4()}")).status_code == 200
    assert (await browser.get("/console/audit?before=2")).status_code in (400, 422)


async def test_audit_page_reports_the_broken_block(browser, kernel, owner_engine, make_tenant):
    from tests.integration.audit.helpers import events_of, key, seal, seals_of, tampering

    tenant = await make_tenant()
    await seal(kernel, tenant.id)
    seals, events = await seals_of(owner_engine, tenant.id), await events_of(owner_engine, tenant.id)
    async with tampering(owner_engine) as conn:
        await conn.execute(text("update audit_events set action = 'tenant.deleted' where tenant_id = :t and id = :id"),
                           {"t": key(owner_engine, tenant.id), "id": events[0].id})
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    page = await browser.get("/console/audit")
    r = await browser.http.post("/console/audit/verify", data={"_csrf_token": csrf_of(page.text)})
    assert r.status_code == 200 and 'data-report="broken"' in r.text
    block = next(s.block for s in seals if s.from_pos <= events[0].txid < s.to_pos)
    assert f"审计链在第 {block} 个区块处断开" in r.text and "changed" in r.text
