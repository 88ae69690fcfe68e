"""Console login and logout, lockout, CSRF, role guard, suspended tenant and the language switch."""

from __future__ import annotations

from tests.integration.console.conftest import csrf_of, text_of


async def test_login_logout_and_redirects(browser, make_tenant):
    tenant = await make_tenant()
    r = await browser.get("/console/users")
    assert r.status_code == 303 and r.headers["location"] == "/console/login?next=%2Fconsole%2Fusers"
    page = await browser.get("/console/login")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "登录管理后台" in page.text  # zh-CN is the default language
    before = browser.http.cookies.get("kq_session")

    r = await browser.submit(
        "/console/login",
        "/console/login?next=/console/users",
        {"tenant": tenant.slug, "email": tenant.owner_email, "password": tenant.owner_password},
    )
    assert r.status_code == 303 and r.headers["location"] == "/console/users"
    after = browser.http.cookies.get("kq_session")
    assert after and after != before  # a fresh session id at login (no fixation)
    dash = await browser.get("/console")
    assert dash.status_code == 200
    assert f"Tenant {tenant.slug}" in dash.text and tenant.owner_email in dash.text

    r = await browser.http.post("/console/logout", data={"_csrf_token": csrf_of(dash.text)})
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    assert (await browser.get("/console")).status_code == 303


async def test_wrong_password_and_unknown_tenant_are_readable(browser, make_tenant):
    tenant = await make_tenant()
    r = await browser.console_login(tenant.slug, tenant.owner_email, "not-the-password")
    assert r.status_code == 401
    assert "租户、邮箱或密码错误" in r.text and 'role="alert"' in r.text
    assert tenant.owner_email in r.text and "not-the-password" not in r.text  # e-mail kept, password not
    r = await browser.console_login("no-such-tenant", tenant.owner_email, tenant.owner_password)
    assert r.status_code == 401 and "租户、邮箱或密码错误" in r.text
    r = await browser.console_login("", "", "")
    assert r.status_code == 401


async def test_lockout_message_after_repeated_failures(browser, make_tenant, settings):
    tenant = await make_tenant()
    for _ in range(settings.login_max_failures):
        r = await browser.console_login(tenant.slug, tenant.owner_email, "wrong-password-x")
        assert r.status_code == 401
    r = await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    assert r.status_code == 423
    assert "登录失败次数过多" in text_of(r.text)
    await browser.get("/console/lang?to=en&next=/console/login")
    r = await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    assert r.status_code == 423 and "Too many failed logins; try again later" in r.text


async def test_post_without_csrf_token_is_refused(browser, make_tenant):
    tenant = await make_tenant()
    await browser.get("/console/login")  # has the CSRF cookie, but the form field is missing
    r = await browser.http.post(
        "/console/login",
        data={"tenant": tenant.slug, "email": tenant.owner_email, "password": tenant.owner_password},
    )
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    assert "表单已过期" in r.text
    assert (await browser.get("/console")).status_code == 303  # not logged in

    assert (
        await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    ).status_code == 303
    r = await browser.http.post("/console/users", data={"email": "x@example.com", "role": "admin"})
    assert r.status_code == 403
    r = await browser.http.post(
        "/console/users", data={"email": "x@example.com", "role": "admin", "_csrf_token": "forged" * 20}
    )
    assert r.status_code == 403
    users = await browser.get("/console/users")
    assert "x@example.com" not in users.text


async def test_viewer_gets_a_readable_403(browser, make_tenant, make_user):
    tenant = await make_tenant()
    viewer = await make_user(tenant, "viewer")
    assert (await browser.console_login(tenant.slug, viewer.email, viewer.password)).status_code == 303
    dash = await browser.get("/console")
    assert dash.status_code == 200
    assert 'href="/console/users"' not in dash.text and 'href="/console/clients"' not in dash.text
    for path in ("/console/users", "/console/clients", "/console/audit"):
        r = await browser.get(path)
        assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
        assert "您的角色无权执行此操作" in r.text
    r = await browser.submit("/console", "/console/clients", {"name": "sneaky", "scopes": "tenant:read"})
    assert r.status_code == 403


async def test_finance_sees_audit_but_not_users(browser, make_tenant, make_user):
    tenant = await make_tenant()
    finance = await make_user(tenant, "finance")
    await browser.console_login(tenant.slug, finance.email, finance.password)
    assert (await browser.get("/console/audit")).status_code == 200
    assert (await browser.get("/console/users")).status_code == 403


async def test_suspended_tenant_page_and_login_message(browser, new_browser, client, operator, make_tenant):
    tenant = await make_tenant()
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    r = await client.post(
        f"/api/platform/v1/tenants/{tenant.id}/suspend", json={"reason": "unpaid"}, headers=operator.headers
    )
    assert r.status_code == 200
    page = await browser.get("/console")
    assert page.status_code == 403
    assert "租户已暂停" in page.text and "该租户已被暂停，请联系平台运营方" in page.text
    assert (await browser.get("/console/users")).status_code == 403

    other = new_browser()
    r = await other.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    assert r.status_code == 403 and "该租户已被暂停" in r.text

    r = await client.post(f"/api/platform/v1/tenants/{tenant.id}/resume", json={}, headers=operator.headers)
    assert r.status_code == 200
    assert (await browser.get("/console")).status_code == 200


async def test_language_switch(browser, make_tenant):
    tenant = await make_tenant()
    r = await browser.get("/console/lang?to=en&next=/console/login")
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    assert browser.http.cookies.get("lang") == "en"
    page = await browser.get("/console/login")
    assert '<html lang="en">' in page.text and "Log in to your console" in page.text
    r = await browser.console_login(tenant.slug, tenant.owner_email, "bad-password-1")
    assert "Wrong tenant, e-mail or password" in r.text
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    dash = await browser.get("/console")
    assert "Dashboard" in dash.text and "API requests per minute" in dash.text

    r = await browser.get("/console/lang?to=zh-CN&next=/console")
    assert r.headers["location"] == "/console" and browser.http.cookies.get("lang") == "zh-CN"
    dash = await browser.get("/console")
    assert '<html lang="zh-CN">' in dash.text and "概览" in dash.text and "每分钟 API 请求数" in dash.text


async def test_language_switch_never_redirects_off_site(browser):
    for target in ("https://evil.example", "//evil.example", "/\\evil.example", "/api/v1/tenant"):
        r = await browser.get("/console/lang", params={"to": "en", "next": target})
        assert r.status_code == 303 and r.headers["location"] == "/console"
    r = await browser.get("/console/lang", params={"to": "fr", "next": "/platform/plans"})
    assert r.headers["location"] == "/platform/plans" and browser.http.cookies.get("lang") == "en"


async def test_accept_language_picks_english_without_cookie(browser):
    page = await browser.get("/console/login", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert "Log in to your console" in page.text


async def test_invite_acceptance(browser, kernel, make_tenant):
    from core.db.context import tenant_context
    from tenants.users import create_invited_user

    tenant = await make_tenant()
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            _user, url = await create_invited_user(kernel, db, f"new@{tenant.slug}.example.com", "admin", "")
    path = url.split("testserver.local", 1)[-1].split("127.0.0.1:8000", 1)[-1]
    page = await browser.get(path)
    assert page.status_code == 200 and page.headers["referrer-policy"] == "no-referrer"
    assert f"new@{tenant.slug}.example.com" in page.text and "管理员" in page.text

    r = await browser.submit(
        path, path, {"password": "long-password-1", "password_confirm": "other-password"}
    )
    assert r.status_code == 422 and "两次输入的密码不一致" in r.text
    r = await browser.submit(path, path, {"password": "short", "password_confirm": "short"})
    assert r.status_code == 422 and "密码至少需要 10 个字符" in r.text
    r = await browser.submit(
        path, path, {"password": "long-password-1", "password_confirm": "long-password-1"}
    )
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    login = await browser.get(r.headers["location"])
    assert "密码已设置" in login.text and f'value="{tenant.slug}"' in login.text
    assert f'value="new@{tenant.slug}.example.com"' in login.text

    again = await browser.get(path)
    assert again.status_code == 404 and "邀请链接无效或已被使用" in again.text
    r = await browser.console_login(tenant.slug, f"new@{tenant.slug}.example.com", "long-password-1")
    assert r.status_code == 303
    assert (await browser.get("/console/users")).status_code == 200  # admin may manage users
    r = await browser.get("/console/login?next=/console/audit")  # already logged in
    assert r.status_code == 303 and r.headers["location"] == "/console/audit"
