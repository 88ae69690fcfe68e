"""Webhook test send (发送测试): a signed ``webhook.test`` event POSTed now to one endpoint through the real
delivery code, its HTTP status and time (or a readable error) shown, the attempt in the delivery log; the API
endpoint ``POST /api/v1/webhooks/{id}/test`` does the same."""

from __future__ import annotations

import socket

import msgspec

from core.webhooks import signing
from tests.integration.console.conftest import text_of
from tests.integration.webhooks.test_console import _login


async def test_api_test_send_is_signed_answered_and_logged(hooks, receiver, webhook_jobs):
    created = await hooks.subscribe(receiver.url("/t"), ["stock.low"])
    sub = {**created["subscription"], "secret": created["secret"]}
    r = await hooks.client.post(f"/api/v1/webhooks/{sub['id']}/test", headers=hooks.headers)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["success"] is True and result["status_code"] == 200 and result["duration_ms"] >= 0
    got = receiver.at("/t")
    assert len(got) == 1
    body = msgspec.json.decode(got[0].body)
    assert body["type"] == "webhook.test" and body["data"]["test"] is True
    signing.verify(sub["secret"], got[0].body, got[0].headers["kaquan-signature"])  # raises if not genuine
    log = await hooks.deliveries(sub["id"])
    assert [(d["id"], d["event_type"], d["status"], d["last_status_code"]) for d in log] == [
        (result["delivery_id"], "webhook.test", "succeeded", 200)
    ]

    receiver.script("/t", (500, "boom"))
    failed = (await hooks.client.post(f"/api/v1/webhooks/{sub['id']}/test", headers=hooks.headers)).json()
    assert (
        failed["success"] is False and failed["status_code"] == 500 and failed["response_snippet"] == "boom"
    )
    log = await hooks.deliveries(sub["id"])
    assert log[0]["status"] == "gave_up" and log[0]["attempts"] == 1  # a test is sent once, never retried

    feed = await hooks.client.get("/api/v1/events", headers=hooks.headers)
    assert feed.status_code == 200 and "webhook.test" not in feed.text  # not part of the tenant's event feed

    missing = await hooks.client.post(
        "/api/v1/webhooks/00000000-0000-7000-8000-000000000000/test", headers=hooks.headers
    )
    assert missing.status_code == 404 and missing.json()["code"] == "webhook_not_found"


async def test_console_test_send_shows_status_or_a_readable_error(app, client, hooks, receiver, webhook_jobs):
    ok = (await hooks.subscribe(receiver.url("/c")))["subscription"]
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    dead = (await hooks.subscribe(f"http://127.0.0.1:{dead_port}/hook"))["subscription"]
    b = await _login(app, client, hooks.tenant)
    try:
        listing = await b.get("/console/webhooks")
        assert listing.text.count("data-test-send") == 2
        r = await b.submit("/console/webhooks", f"/console/webhooks/{ok['id']}/test", {})
        assert r.status_code == 303 and r.headers["location"] == f"/console/webhooks/{ok['id']}"
        page = text_of((await b.get(r.headers["location"])).text)
        assert "测试事件已送达：HTTP 200" in page and "毫秒" in page and "webhook.test" in page
        assert len(receiver.at("/c")) == 1

        r = await b.submit("/console/webhooks", f"/console/webhooks/{dead['id']}/test", {})
        page = text_of((await b.get(r.headers["location"])).text)
        flashed = page.split("发送测试")[0]
        assert "测试事件未送达" in flashed and "无法连接" in flashed, page
    finally:
        await b.http.aclose()
