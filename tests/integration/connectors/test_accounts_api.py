"""Connector accounts through the API: the plan decides what can be connected; settings are checked against the
connector's config Struct; secrets are sealed and never answered, logged or stored in plaintext; test,
pause, resume, disconnect and health; a raising and a hanging connector fail only their own call."""

from __future__ import annotations

import io
import logging
import uuid

import pytest
import structlog
from sqlalchemy import select

from core.connectors import services
from core.connectors.calls import health_recorded
from core.db.base import Base
from core.db.context import tenant_context
from core.events.models import Event
from core.logging import configure_logging
from tests.integration.connectors.conftest import GOOD_KEY, Accounts

SECRET = "sk-live-3c1f9a77e2"


async def test_only_connectors_the_plan_allows_are_offered_and_connectable(
    client, make_tenant, make_api_client, test_connectors, accounts: Accounts, no_connectors_plan: str
):
    starter = await make_tenant(plan=no_connectors_plan)
    creds = await make_api_client(starter, ["connectors:read", "connectors:manage"])
    r = await client.get("/api/v1/connectors", headers=creds.headers)
    assert r.status_code == 200 and r.json() == []
    r = await client.post(
        "/api/v1/connector-accounts",
        json={"connector_id": "test_pager", "name": "pager", "config": {"api_key": SECRET}},
        headers=creds.headers,
    )
    assert r.status_code == 403 and r.json()["code"] == "connector_not_allowed", r.text
    assert SECRET not in r.text

    r = await accounts.get("/api/v1/connectors", params={"kind": "notifier"})
    assert r.status_code == 200
    offered = {c["id"]: c for c in r.json()}
    assert {"test_pager", "test_raising", "log_notifier"} <= set(offered)
    assert "test_shop" not in offered  # a sales channel, not a notifier
    pager = offered["test_pager"]
    assert pager["secret_fields"] == ["api_key"] and pager["oauth"] is False
    props = pager["config_schema"]["$defs"]["PagerConfig"]["properties"]
    assert props["api_key"]["writeOnly"] is True and props["port"]["type"] == "integer"
    shop = (await accounts.get("/api/v1/connectors/test_shop")).json()
    assert shop["oauth"] is True and shop["kind"] == "sales_channel"
    assert (await accounts.get("/api/v1/connectors/nope")).status_code == 404


async def test_secrets_are_sealed_never_answered_logged_or_stored_in_plaintext(
    accounts: Accounts, owner_engine, settings, caplog
):
    buffer = io.StringIO()
    configure_logging("DEBUG", json=True)
    processors = structlog.get_config()["processors"]
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(buffer), processors=processors)
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []
    try:
        created = await accounts.connect("test_pager", "短信主账户", api_key=SECRET, sender="ACME", port="8443")
        answers.append(str(created))
        assert created["status"] == "active" and created["secrets_set"] == ["api_key"]
        assert created["config"] == {"sender": "ACME", "port": 8443, "verbose": False}
        aid = created["id"]
        for path in (f"/api/v1/connector-accounts/{aid}", "/api/v1/connector-accounts",
                     f"/api/v1/connector-accounts/{aid}/health"):
            r = await accounts.get(path)
            assert r.status_code == 200
            answers.append(r.text)
        r = await accounts.client.patch(
            f"/api/v1/connector-accounts/{aid}", json={"config": {"sender": "ACME2", "api_key": ""}},
            headers=accounts.headers,
        )
        assert r.status_code == 200 and r.json()["config"]["sender"] == "ACME2", r.text
        assert r.json()["secrets_set"] == ["api_key"]  # an empty secret keeps the stored one
        answers.append(r.text)
        r = await accounts.post(f"/api/v1/connector-accounts/{aid}/test")
        assert r.status_code == 200 and r.json()["ok"] is False and r.json()["tested"] is True, r.text
        answers.append(r.text)
        r = await accounts.client.patch(
            f"/api/v1/connector-accounts/{aid}", json={"config": {"api_key": GOOD_KEY}}, headers=accounts.headers
        )
        assert r.status_code == 200
        r = await accounts.post(f"/api/v1/connector-accounts/{aid}/test")
        assert r.json()["ok"] is True and r.json()["detail"] == "reached the pager", r.text
        await health_recorded()
        health = (await accounts.get(f"/api/v1/connector-accounts/{aid}/health")).json()
        assert health["state"] == "ok" and health["consecutive_failures"] == 0
    finally:
        configure_logging(settings.log_level, settings.log_json)
    logs = buffer.getvalue() + caplog.text
    assert "connector_account_connected" in logs
    for blob in (*answers, logs):
        assert SECRET not in blob and GOOD_KEY not in blob

    found: list[str] = []
    async with owner_engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if "tenant_id" not in table.c:
                continue
            for row in await conn.execute(select(table).where(table.c.tenant_id == accounts.tenant.id)):
                for value in row:
                    raw = value if isinstance(value, bytes) else str(value).encode()
                    if SECRET.encode() in raw or GOOD_KEY.encode() in raw:
                        found.append(table.name)
    assert found == []


async def test_bad_settings_names_and_connectors_are_refused_clearly(accounts: Accounts):
    url = "/api/v1/connector-accounts"
    cases = [
        ({"connector_id": "test_pager", "name": "a", "config": {"api_kee": "x"}}, 422, "connector_config_invalid"),
        ({"connector_id": "test_pager", "name": "a", "config": {"port": "https"}}, 422, "connector_config_invalid"),
        ({"connector_id": "test_shop", "name": "a", "config": {}}, 422, "connector_config_invalid"),
        ({"connector_id": "no_such_thing", "name": "a", "config": {}}, 422, "connector_unknown"),
        ({"connector_id": "test_pager", "name": "", "config": {}}, 400, None),
    ]
    for body, status, code in cases:
        r = await accounts.post(url, json=body)
        assert r.status_code in ((status,) if code else (400, 422)), (body, r.text)
        if code:
            assert r.json()["code"] == code, r.text
    r = await accounts.post(url, json={"connector_id": "test_pager", "name": "a", "config": {"port": "https"}})
    assert r.json()["errors"][0]["field"] == "config.port"
    await accounts.connect("test_pager", "taken")
    r = await accounts.post(url, json={"connector_id": "test_pager", "name": "taken", "config": {}})
    assert r.status_code == 409 and r.json()["code"] == "connector_account_name_taken"
    listed = (await accounts.get(url)).json()["items"]
    assert [a["name"] for a in listed] == ["taken"]  # nothing stored by the refusals


async def test_pause_resume_disconnect_and_health(accounts: Accounts, kernel):
    created = await accounts.connect("test_pager", api_key=GOOD_KEY)
    aid = created["id"]
    base = f"/api/v1/connector-accounts/{aid}"
    assert created["health"]["state"] == "unknown"
    assert await services.find_route(kernel.db, uuid.UUID(aid)) == accounts.tenant.id  # for public callbacks
    r = await accounts.post(f"{base}/pause", json={"reason": "holiday"})
    assert r.status_code == 200 and r.json()["status"] == "paused" and r.json()["status_reason"] == "holiday"
    assert (await accounts.post(f"{base}/pause")).json()["status_reason"] == "holiday"  # idempotent
    assert (await accounts.get(f"{base}/health")).json()["state"] == "paused"
    assert (await accounts.get("/api/v1/connector-accounts", params={"status": "paused"})).json()["items"][0]["id"] == aid
    r = await accounts.post(f"{base}/test")  # a paused account can still be tested
    assert r.json()["ok"] is True
    r = await accounts.post(f"{base}/resume")
    assert r.status_code == 200 and r.json()["status"] == "active" and r.json()["status_reason"] == ""
    r = await accounts.post(f"{base}/disconnect")
    assert r.status_code == 200 and r.json()["status"] == "disconnected" and r.json()["secrets_set"] == []
    for path in ("resume", "pause"):
        r = await accounts.post(f"{base}/{path}")
        assert r.status_code == 409 and r.json()["code"] == "connector_account_state", r.text
    r = await accounts.client.patch(base, json={"name": "again"}, headers=accounts.headers)
    assert r.status_code == 409
    r = await accounts.post(f"{base}/test")
    assert r.json() | {"checked_at": None} == {
        "account_id": aid, "ok": False, "tested": False, "detail": "disconnected", "checked_at": None
    }
    assert await services.find_route(kernel.db, uuid.UUID(aid)) is None  # the callback route is gone
    with tenant_context(accounts.tenant.id):
        async with kernel.db.transaction() as db:
            q = select(Event.type).where(Event.object_id == aid).order_by(Event.id)
            types = list((await db.execute(q)).scalars())
    assert types == [
        "connector.account_connected",
        "connector.account_paused",
        "connector.account_resumed",
        "connector.account_disconnected",
    ]


async def test_a_raising_and_a_hanging_connector_fail_only_their_own_call(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(services, "CHECK_TIMEOUT", 0.5)
    token = "tok-9d8e7f6a5b"
    raising = await accounts.connect("test_raising", token=token)
    hanging = await accounts.connect("test_hanging", token=token)
    pager = await accounts.connect("test_pager", api_key=GOOD_KEY)

    r = await accounts.post(f"/api/v1/connector-accounts/{raising['id']}/test")
    assert r.status_code == 200 and r.json()["ok"] is False
    assert r.json()["detail"].startswith("raised: RuntimeError: provider exploded") and token not in r.text
    r = await accounts.post(f"/api/v1/connector-accounts/{hanging['id']}/test")
    assert r.status_code == 200 and r.json()["ok"] is False and r.json()["detail"].startswith("timeout"), r.text
    r = await accounts.post(f"/api/v1/connector-accounts/{pager['id']}/test")
    assert r.json()["ok"] is True

    await health_recorded()
    states = {}
    for a in (raising, hanging, pager):
        h = (await accounts.get(f"/api/v1/connector-accounts/{a['id']}/health")).json()
        states[a["connector_id"]] = (h["state"], h["consecutive_failures"])
        assert token not in h["last_error"]
    assert states == {"test_raising": ("failing", 1), "test_hanging": ("failing", 1), "test_pager": ("ok", 0)}


async def test_scopes_guard_the_account_endpoints(accounts: Accounts, make_api_client):
    reader = await make_api_client(accounts.tenant, ["connectors:read"])
    r = await accounts.client.get("/api/v1/connector-accounts", headers=reader.headers)
    assert r.status_code == 200
    r = await accounts.client.post(
        "/api/v1/connector-accounts", json={"connector_id": "test_pager", "name": "x"}, headers=reader.headers
    )
    assert r.status_code == 403
    nothing = await make_api_client(accounts.tenant, ["events:read"])
    assert (await accounts.client.get("/api/v1/connectors", headers=nothing.headers)).status_code == 403
