"""Webhook subscriptions API: create (secret shown once), read, change, rotate, delete; bad input; the URL
policy (https, no private targets in service mode); tenant isolation; the secret never stored, logged or
read back in plaintext."""

from __future__ import annotations

import io
import uuid

import pytest
import structlog
from sqlalchemy import select, text

from core.audit.models import AuditEvent
from core.db.context import tenant_context
from core.events.models import WebhookSubscription
from core.jobs.models import OutboxMessage
from core.logging import configure_logging
from core.webhooks import services

PROBLEM = "application/problem+json"


async def test_create_read_update_rotate_delete(hooks):
    created = await hooks.subscribe(
        "https://erp.example.com/hooks", ["stock.low", "grant.created", "stock.low"], description=" ERP "
    )
    sub, secret = created["subscription"], created["secret"]
    assert sub["events"] == ["grant.created", "stock.low"] and sub["description"] == "ERP"
    assert sub["url"] == "https://erp.example.com/hooks" and sub["active"] is True and "secret" not in sub

    r = await hooks.client.get(f"/api/v1/webhooks/{sub['id']}", headers=hooks.headers)
    assert r.status_code == 200 and r.json() == sub and secret not in r.text
    r = await hooks.client.get("/api/v1/webhooks", headers=hooks.headers)
    assert [s["id"] for s in r.json()["items"]] == [sub["id"]] and secret not in r.text

    r = await hooks.client.patch(
        f"/api/v1/webhooks/{sub['id']}",
        headers=hooks.headers,
        json={"events": ["*", "stock.low"], "active": False, "url": "https://crm.example.com/k"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["events"] == ["*"] and body["active"] is False and body["url"] == "https://crm.example.com/k"
    assert body["updated_at"] is not None and secret not in r.text

    r = await hooks.client.post(f"/api/v1/webhooks/{sub['id']}/rotate-secret", headers=hooks.headers)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    rotated = r.json()["secret"]
    assert rotated.startswith("whsec_") and rotated != secret

    r = await hooks.client.delete(f"/api/v1/webhooks/{sub['id']}", headers=hooks.headers)
    assert r.status_code == 204
    r = await hooks.client.get(f"/api/v1/webhooks/{sub['id']}", headers=hooks.headers)
    assert r.status_code == 404 and r.json()["code"] == "webhook_not_found"

    with tenant_context(hooks.tenant.id):
        async with hooks.kernel.db.transaction() as db:
            actions = list(
                (
                    await db.execute(
                        select(AuditEvent.action)
                        .where(AuditEvent.object_id == sub["id"])
                        .order_by(AuditEvent.occurred_at, AuditEvent.id)
                    )
                ).scalars()
            )
    assert actions == ["webhook.created", "webhook.updated", "webhook.secret_rotated", "webhook.deleted"]


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"url": "https://erp.example.com/h", "events": []}, "validation_failed", "events"),
        (
            {"url": "https://erp.example.com/h", "events": ["stock.low", "nope.never"]},
            "validation_failed",
            "events",
        ),
        ({"url": "ftp://erp.example.com/h", "events": ["*"]}, "webhook_url_refused", "url"),
        ({"url": "not a url", "events": ["*"]}, "webhook_url_refused", "url"),
        ({"url": "http://erp.example.com/h", "events": ["*"]}, "webhook_url_refused", "url"),
        ({"url": "https://user:pw@erp.example.com/h", "events": ["*"]}, "webhook_url_refused", "url"),
        ({"url": "https://erp.example.com:99999/h", "events": ["*"]}, "webhook_url_refused", "url"),
    ],
)
async def test_bad_input_is_a_problem_with_a_stable_code(hooks, body, code, field):
    r = await hooks.client.post(
        "/api/v1/webhooks", headers={**hooks.headers, "Accept-Language": "zh-CN"}, json=body
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    problem = r.json()
    assert problem["code"] == code and problem["errors"][0]["field"] == field


async def test_wrong_types_and_unknown_fields_are_refused(hooks):
    for body in (
        {"url": 5, "events": ["*"]},
        {"url": "https://a.example.com", "events": "*"},
        {"url": "https://a.example.com", "events": ["*"], "secret": "mine"},
    ):
        r = await hooks.client.post("/api/v1/webhooks", headers=hooks.headers, json=body)
        assert r.status_code in (400, 422) and r.headers["content-type"].startswith(PROBLEM), r.text


async def test_private_targets_are_refused_when_not_allowed(hooks, monkeypatch):
    monkeypatch.setattr(services, "allow_private", lambda settings: False)
    for url in (
        "https://127.0.0.1/h",
        "https://10.1.2.3/h",
        "https://localhost:8443/h",
        "https://[::1]/h",
        "https://169.254.169.254/latest/meta-data",
        "http://127.0.0.1:9000/h",
        "https://192.168.0.1/x",
    ):
        r = await hooks.client.post(
            "/api/v1/webhooks", headers=hooks.headers, json={"url": url, "events": ["*"]}
        )
        assert r.status_code == 422 and r.json()["code"] == "webhook_url_refused", (url, r.text)
    ok = await hooks.subscribe("https://93.184.216.34/h")  # a public literal address is fine
    r = await hooks.client.patch(
        f"/api/v1/webhooks/{ok['subscription']['id']}",
        headers=hooks.headers,
        json={"url": "https://127.0.0.1/h"},
    )
    assert r.status_code == 422 and r.json()["code"] == "webhook_url_refused"


async def test_the_scope_is_required(hooks, make_api_client):
    other = await make_api_client(hooks.tenant, ["events:read"])
    r = await hooks.client.get("/api/v1/webhooks", headers=other.headers)
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"
    r = await hooks.client.get("/api/v1/webhooks")
    assert r.status_code == 401


async def test_tenant_b_gets_404_for_tenant_a_subscriptions_and_deliveries(
    hooks, receiver, webhook_jobs, make_tenant, make_api_client
):
    sub = (await hooks.subscribe(receiver.url("/a")))["subscription"]
    await hooks.emit()
    (delivery,) = await hooks.wait_for(
        sub["id"], lambda items: len(items) == 1 and items[0]["status"] == "succeeded"
    )

    tenant_b = await make_tenant()
    b = await make_api_client(tenant_b, ["webhooks:manage"])
    sid, did = sub["id"], delivery["id"]
    calls = [
        ("GET", f"/api/v1/webhooks/{sid}", None),
        ("PATCH", f"/api/v1/webhooks/{sid}", {"active": False}),
        ("DELETE", f"/api/v1/webhooks/{sid}", None),
        ("POST", f"/api/v1/webhooks/{sid}/rotate-secret", None),
        ("GET", f"/api/v1/webhooks/{sid}/deliveries", None),
        ("GET", f"/api/v1/webhook-deliveries/{did}", None),
        ("POST", f"/api/v1/webhook-deliveries/{did}/resend", None),
    ]
    for method, url, body in calls:
        r = await hooks.client.request(method, url, headers=b.headers, json=body)
        assert r.status_code == 404, (method, url, r.text)
    r = await hooks.client.get("/api/v1/webhooks", headers=b.headers)
    assert r.json()["items"] == []
    for method, url, _ in calls[:1] + calls[4:6]:  # A still has everything, unchanged
        r = await hooks.client.request(method, url, headers=hooks.headers)
        assert r.status_code == 200
    assert (await hooks.client.get(f"/api/v1/webhooks/{sid}", headers=hooks.headers)).json()["active"] is True
    r = await hooks.client.get(f"/api/v1/webhooks/{uuid.uuid4()}", headers=hooks.headers)
    assert r.status_code == 404


async def test_the_secret_is_never_stored_logged_queued_or_read_back(
    hooks, receiver, webhook_jobs, settings, owner_engine
):
    buffer = io.StringIO()
    configure_logging("DEBUG", json=True)
    processors = structlog.get_config()["processors"]
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(buffer), processors=processors)
    try:
        created = await hooks.subscribe(receiver.url("/secret"))
        sub, secret = created["subscription"], created["secret"]
        receiver.script("/secret", (500, "again"))
        await hooks.emit()
        await hooks.wait_for(sub["id"], lambda items: len(items) == 1 and items[0]["last_status_code"] == 500)
        await hooks.fast_forward()
        (d,) = await hooks.wait_for(sub["id"], lambda items: items[0]["status"] == "succeeded")
        reads = [
            await hooks.client.get(f"/api/v1/webhooks/{sub['id']}", headers=hooks.headers),
            await hooks.client.get("/api/v1/webhooks", headers=hooks.headers),
            await hooks.client.get(f"/api/v1/webhooks/{sub['id']}/deliveries", headers=hooks.headers),
            await hooks.client.get(f"/api/v1/webhook-deliveries/{d['id']}", headers=hooks.headers),
            await hooks.client.patch(
                f"/api/v1/webhooks/{sub['id']}", headers=hooks.headers, json={"description": "x"}
            ),
        ]
    finally:
        configure_logging(settings.log_level, settings.log_json)
    assert "webhook_attempt" in buffer.getvalue()  # the attempts were logged …
    assert secret not in buffer.getvalue()  # … without the secret
    for r in reads:
        assert r.status_code == 200 and secret not in r.text
    assert len(receiver.at("/secret")) == 2

    raw = secret.encode()
    async with owner_engine.connect() as conn:
        for table in ("webhook_subscriptions", "webhook_deliveries", "outbox", "audit_events", "events"):
            rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
            for row in rows:
                for value in row:
                    blob = value if isinstance(value, bytes) else str(value).encode()
                    assert raw not in blob, table
    with tenant_context(hooks.tenant.id):
        async with hooks.kernel.db.transaction() as db:
            row = (await db.execute(select(WebhookSubscription))).scalar_one()
            cipher = await hooks.kernel.keys.cipher(db)
            assert services.open_secret(cipher, row) == secret  # encrypted, and it opens
            payloads = (await db.execute(select(OutboxMessage.payload))).scalars().all()
    assert all(secret not in str(p) for p in payloads)
