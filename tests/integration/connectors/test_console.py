"""Console connector pages: the connect form follows the connector's config Struct (secrets are password
inputs, never filled back or shown), refusals are readable in Chinese and English, and test, pause, resume,
settings and disconnect work; only owners and admins see the pages."""

from __future__ import annotations

import re

import httpx

from tests.integration.connectors.conftest import GOOD_KEY, Accounts
from tests.integration.console.conftest import Browser, text_of


async def _login(app, slug: str, email: str, password: str) -> Browser:
    b = Browser(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local"))
    r = await b.console_login(slug, email, password)
    assert r.status_code in (302, 303), r.text
    return b


async def test_connect_test_pause_resume_update_and_disconnect_from_the_console(app, accounts: Accounts):
    t = accounts.tenant
    b = await _login(app, t.slug, t.owner_email, t.owner_password)
    try:
        home = await b.get("/console/connectors")
        assert home.status_code == 200 and 'href="/console/connectors"' in home.text
        assert "暂无连接账户" in text_of(home.text) and 'data-connector="test_pager"' in home.text

        form = await b.get("/console/connectors/new/test_pager")
        assert form.status_code == 200
        assert re.search(r'name="config\.api_key" type="password"', form.text)
        assert re.search(r'name="config\.port" type="number"', form.text)
        assert re.search(r'type="checkbox" name="config\.verbose"', form.text)

        bad = {"name": "短信", "config.api_key": GOOD_KEY, "config.port": "https", "config.sender": "ACME"}
        r = await b.submit("/console/connectors/new/test_pager", "/console/connectors/new/test_pager", bad)
        assert r.status_code == 422
        assert "设置项 port 不正确" in text_of(r.text) and GOOD_KEY not in r.text
        assert 'value="ACME"' in r.text  # the other values are kept

        good = {**bad, "config.port": "8443", "config.verbose": "on"}
        r = await b.submit("/console/connectors/new/test_pager", "/console/connectors/new/test_pager", good)
        assert r.status_code == 303, r.text
        url = r.headers["location"]
        aid = url.rsplit("/", 1)[1]
        page = await b.get(url)
        text = text_of(page.text)
        assert "账户 短信 已连接" in text and "尚未调用" in text and GOOD_KEY not in page.text
        assert "已设置——留空则保持不变" in page.text and 'value="8443"' in page.text

        r = await b.submit(url, f"{url}/test", {})
        assert r.status_code == 200 and 'data-check="ok"' in r.text and "连接正常" in text_of(r.text)
        r = await b.submit(url, f"{url}/pause", {})
        assert r.status_code == 303
        page = await b.get(url)
        assert 'data-status="paused"' in page.text and "账户已暂停" in text_of(page.text)
        r = await b.submit(url, f"{url}/resume", {})
        page = await b.get(url)
        assert 'data-status="active"' in page.text

        r = await b.submit(url, url, {"name": "短信主账户", "config.api_key": "", "config.port": "8443",
                                     "config.sender": "ACME2"})
        assert r.status_code == 303
        account = (await accounts.get(f"/api/v1/connector-accounts/{aid}")).json()
        assert account["name"] == "短信主账户" and account["config"]["sender"] == "ACME2"
        assert account["config"]["verbose"] is False and account["secrets_set"] == ["api_key"]
        r = await b.submit(url, f"{url}/test", {})
        assert 'data-check="ok"' in r.text  # the empty password kept the stored secret

        r = await b.submit(url, f"{url}/disconnect", {})
        page = await b.get(url)
        assert 'data-status="disconnected"' in page.text and "密钥和令牌已清除" in text_of(page.text)
        assert "data-settings-form" not in page.text
        listing = await b.get("/console/connectors")
        assert f'data-account="{aid}" data-status="disconnected"' in listing.text
    finally:
        await b.http.aclose()


async def test_refusals_read_in_english_and_the_shop_shows_its_authorisation(app, accounts: Accounts, token_server):
    t = accounts.tenant
    b = await _login(app, t.slug, t.owner_email, t.owner_password)
    try:
        await b.get("/console/lang?to=en&next=/console/connectors")
        r = await b.submit("/console/connectors/new/test_shop", "/console/connectors/new/test_shop",
                           {"name": "Shop", "config.app_secret": "s3cr3t-value"})
        assert r.status_code == 422 and "The setting shop_id is required" in text_of(r.text)
        assert "s3cr3t-value" not in r.text
        r = await b.submit("/console/connectors/new/test_shop", "/console/connectors/new/test_shop",
                           {"name": "Shop", "config.shop_id": "s1", "config.base_url": token_server.base_url})
        assert r.status_code == 303
        url = r.headers["location"]
        page = await b.get(url)
        assert "Waiting for the shop owner's authorisation" in text_of(page.text).replace("&#39;", "'")
        assert 'data-authorised="no"' in page.text and 'data-action="authorize"' in page.text
        r = await b.submit(url, f"{url}/authorize", {})
        assert r.status_code == 303 and r.headers["location"].startswith(f"{token_server.base_url}/authorize?")
        r = await b.submit(url, f"{url}/resume", {})
        assert r.status_code == 409 and "Authorise the shop first" in text_of(r.text)
    finally:
        await b.http.aclose()


async def test_only_owners_and_admins_manage_connectors(app, accounts: Accounts, make_user):
    viewer = await make_user(accounts.tenant, "viewer")
    b = await _login(app, accounts.tenant.slug, viewer.email, viewer.password)
    try:
        assert (await b.get("/console/connectors")).status_code == 403
        home = await b.get("/console")
        assert 'href="/console/connectors"' not in home.text
    finally:
        await b.http.aclose()


async def test_a_mapping_setting_is_a_json_field(app, accounts: Accounts):
    """The built-in SMS gateway maps kaquan's templates to the provider's approved template ids."""
    t = accounts.tenant
    b = await _login(app, t.slug, t.owner_email, t.owner_password)
    try:
        form = await b.get("/console/connectors/new/sms_gateway")
        assert 'name="config.templates" rows="3"' in form.text and 'name="config.api_key" type="password"' in form.text
        base = {"name": "网关", "config.url": "https://sms.example.com/send", "config.api_key": "gw-key-123456"}
        r = await b.submit("/console/connectors/new/sms_gateway", "/console/connectors/new/sms_gateway",
                           {**base, "config.templates": "{not json"})
        assert r.status_code == 422 and "设置项 templates 不正确" in text_of(r.text)
        r = await b.submit("/console/connectors/new/sms_gateway", "/console/connectors/new/sms_gateway",
                           {**base, "config.templates": '{"claim_otp": "SMS_1234"}'})
        assert r.status_code == 303, r.text
        page = await b.get(r.headers["location"])
        assert "SMS_1234" in page.text and "gw-key-123456" not in page.text
        aid = r.headers["location"].rsplit("/", 1)[1]
        account = (await accounts.get(f"/api/v1/connector-accounts/{aid}")).json()
        assert account["config"]["templates"] == {"claim_otp": "SMS_1234"} and account["secrets_set"] == ["api_key"]
    finally:
        await b.http.aclose()
