"""Console webhook pages: create with the secret shown once, the delivery log with status, attempts and
response, "Resend", rotate and delete; only roles with webhooks.manage; zh-CN by default, English too."""

from __future__ import annotations

import re

from tests.integration.console.conftest import Browser, text_of


async def _login(app, client, tenant) -> Browser:
    import httpx

    c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local")
    b = Browser(c)
    r = await b.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    assert r.status_code in (302, 303), r.text
    return b


async def test_create_show_secret_once_log_and_resend(app, client, hooks, receiver, webhook_jobs):
    b = await _login(app, client, hooks.tenant)
    try:
        page = await b.get("/console/webhooks")
        assert page.status_code == 200 and "Webhook" in page.text and 'href="/console/webhooks"' in page.text
        assert "暂无 Webhook" in text_of(page.text)
        r = await b.submit(
            "/console/webhooks",
            "/console/webhooks",
            {"url": receiver.url("/console"), "events": ["stock.low"], "description": "ERP", "active": "on"},
        )
        assert r.status_code == 200, r.text
        secret = re.search(r'data-secret="webhook-secret">([^<]+)<', r.text).group(1)
        assert secret.startswith("whsec_") and "只显示一次" in text_of(r.text)
        assert r.headers["cache-control"].startswith("no-store")
        sub_id = re.search(r'href="/console/webhooks/([0-9a-f-]{36})"', r.text).group(1)

        listing = await b.get("/console/webhooks")
        assert secret not in listing.text and receiver.url("/console") in listing.text

        receiver.script("/console", (410, "gone for now"))
        await hooks.emit("stock.low")
        await hooks.wait_for(sub_id, lambda items: len(items) == 1 and items[0]["status"] == "failed")
        detail = await b.get(f"/console/webhooks/{sub_id}")
        assert secret not in detail.text
        row = re.search(r'<tr data-delivery="([^"]+)" data-status="failed">(.*?)</tr>', detail.text, re.S)
        assert row, detail.text
        assert (
            "HTTP 410" in row.group(2) and "gone for now" in row.group(2) and "失败" in text_of(row.group(2))
        )
        assert '<td class="num" data-attempts>1</td>' in row.group(2) and "data-resend" in row.group(2)

        r = await b.submit(
            f"/console/webhooks/{sub_id}", f"/console/webhooks/deliveries/{row.group(1)}/resend", {}
        )
        assert r.status_code == 303 and r.headers["location"] == f"/console/webhooks/{sub_id}"
        await hooks.wait_for(sub_id, lambda items: items[0]["status"] == "succeeded")
        detail = await b.get(f"/console/webhooks/{sub_id}")
        assert 'data-status="succeeded"' in detail.text and "已送达" in text_of(detail.text)
        assert len(receiver.at("/console")) == 2

        r = await b.submit(f"/console/webhooks/{sub_id}", f"/console/webhooks/{sub_id}/rotate", {})
        new_secret = re.search(r'data-secret="webhook-secret">([^<]+)<', r.text).group(1)
        assert new_secret != secret and new_secret.startswith("whsec_")

        r = await b.submit(
            f"/console/webhooks/{sub_id}",
            f"/console/webhooks/{sub_id}",
            {"url": receiver.url("/console"), "events": ["*"], "description": "ERP 2"},
        )
        assert r.status_code == 303
        detail = await b.get(f"/console/webhooks/{sub_id}")
        assert "ERP 2" in detail.text and "已暂停" in text_of(detail.text)  # "active" unchecked

        r = await b.submit(f"/console/webhooks/{sub_id}", f"/console/webhooks/{sub_id}/delete", {})
        assert r.status_code == 303
        assert (await b.get(f"/console/webhooks/{sub_id}")).status_code == 404
    finally:
        await b.http.aclose()


async def test_bad_url_is_shown_in_english_and_viewers_are_refused(app, client, hooks, make_user):
    b = await _login(app, client, hooks.tenant)
    try:
        await b.get("/console/lang?to=en&next=/console/webhooks")
        r = await b.submit(
            "/console/webhooks",
            "/console/webhooks",
            {"url": "ftp://nope.example.com", "events": ["*"], "active": "on"},
        )
        assert r.status_code == 422
        assert "The URL must start with https://" in text_of(r.text) and "Add a webhook" in r.text
        r = await b.submit(
            "/console/webhooks", "/console/webhooks", {"url": "https://ok.example.com/h", "active": "on"}
        )
        assert r.status_code == 422 and "Choose at least one event type" in text_of(r.text)
    finally:
        await b.http.aclose()

    viewer = await make_user(hooks.tenant, "viewer")
    import httpx

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver.local"
    ) as c:
        v = Browser(c)
        await v.console_login(hooks.tenant.slug, viewer.email, viewer.password)
        page = await v.get("/console")
        assert 'href="/console/webhooks"' not in page.text
        assert (await v.get("/console/webhooks")).status_code == 403


async def test_tenant_b_console_gets_404_for_tenant_a_webhooks(app, client, hooks, make_tenant):
    sub = (await hooks.subscribe("https://erp.example.com/h"))["subscription"]
    other = await make_tenant()
    b = await _login(app, client, other)
    try:
        assert (await b.get(f"/console/webhooks/{sub['id']}")).status_code == 404
        r = await b.submit("/console/webhooks", f"/console/webhooks/{sub['id']}/delete", {})
        assert r.status_code == 404
        assert sub["id"] not in (await b.get("/console/webhooks")).text
    finally:
        await b.http.aclose()
    r = await hooks.client.get(f"/api/v1/webhooks/{sub['id']}", headers=hooks.headers)
    assert r.status_code == 200
