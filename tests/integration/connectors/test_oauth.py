"""Shop authorisation by OAuth2 authorisation code through authlib, against a local token endpoint: the
redirect flow, single-use state, tokens sealed at rest, the periodic refresh before expiry, and a refused
refresh that pauses the account and alerts the tenant (event + e-mail to the owner)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select, update

from core.connectors import oauth
from core.connectors.calls import health_recorded
from core.connectors.jobs import refresh_connector_tokens
from core.connectors.models import ConnectorAccount
from core.db.base import utcnow
from core.db.context import tenant_context
from core.events.models import Event
from core.jobs.context import reset_job_context, set_job_context
from core.jobs.models import OutboxMessage
from tests.integration.connectors.conftest import Accounts, TokenServer

APP_SECRET = "app-secret-5e4d3c2b1a"


async def _authorised(accounts: Accounts, token_server: TokenServer) -> tuple[str, dict[str, Any]]:
    created = await accounts.connect(
        "test_shop", shop_id="shop-1", app_key="app-77", app_secret=APP_SECRET, base_url=token_server.base_url
    )
    aid = created["id"]
    r = await accounts.post(f"/api/v1/connector-accounts/{aid}/authorize")
    assert r.status_code == 200, r.text
    state = parse_qs(urlsplit(r.json()["authorize_url"]).query)["state"][0]
    r = await accounts.client.get("/oauth/connectors/callback", params={"state": state, "code": token_server.good_code})
    assert r.status_code == 303, r.text
    return aid, created


async def _row(accounts: Accounts, aid: str) -> ConnectorAccount:
    with tenant_context(accounts.tenant.id):
        async with accounts.kernel.db.transaction() as db:
            return (await db.execute(select(ConnectorAccount).where(ConnectorAccount.id == uuid.UUID(aid)))).scalar_one()


async def _expire_soon(accounts: Accounts, aid: str, minutes: int) -> None:
    with tenant_context(accounts.tenant.id):
        async with accounts.kernel.db.transaction() as db:
            await db.execute(
                update(ConnectorAccount)
                .where(ConnectorAccount.id == uuid.UUID(aid))
                .values(token_expires_at=utcnow() + dt.timedelta(minutes=minutes))
            )


async def test_the_redirect_flow_authorises_the_shop_once(accounts: Accounts, token_server: TokenServer, owner_engine):
    created = await accounts.connect(
        "test_shop", shop_id="shop-1", app_key="app-77", app_secret=APP_SECRET, base_url=token_server.base_url
    )
    aid = created["id"]
    assert (created["status"], created["status_reason"], created["oauth"], created["authorised"]) == (
        "paused", "awaiting_authorisation", True, False
    )
    r = await accounts.post(f"/api/v1/connector-accounts/{aid}/resume")
    assert r.status_code == 409 and r.json()["code"] == "connector_account_not_authorised"
    listed = (await accounts.get("/api/v1/connector-accounts")).json()["items"]
    assert [(a["id"], a["oauth"], a["authorised"]) for a in listed] == [(aid, True, False)]

    r = await accounts.post(f"/api/v1/connector-accounts/{aid}/authorize")
    assert r.status_code == 200 and r.headers["cache-control"].startswith("no-store")
    start = r.json()
    url = urlsplit(start["authorize_url"])
    query = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{token_server.base_url}/authorize"
    assert query["client_id"] == ["app-77"] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == [start["redirect_uri"]] and start["redirect_uri"].endswith("/oauth/connectors/callback")
    assert query["scope"] == ["items orders"] and APP_SECRET not in start["authorize_url"]
    state = query["state"][0]

    forged = state[:-4] + "AAAA"
    r = await accounts.client.get("/oauth/connectors/callback", params={"state": forged, "code": "code-ok"})
    assert r.status_code == 404 and r.json()["code"] == "connector_authorisation_state"
    r = await accounts.client.get("/oauth/connectors/callback", params={"state": "nonsense", "code": "code-ok"})
    assert r.status_code == 404

    r = await accounts.client.get("/oauth/connectors/callback", params={"state": state, "code": "code-ok"})
    assert r.status_code == 303 and r.headers["location"] == f"/console/connectors/accounts/{aid}?authorisation=done"
    exchange = token_server.requests[-1]
    assert exchange["grant_type"] == ["authorization_code"] and exchange["code"] == ["code-ok"]
    assert exchange["_auth"][0].startswith("Basic ")  # the client secret travels only to the token endpoint

    r = await accounts.client.get("/oauth/connectors/callback", params={"state": state, "code": "code-ok"})
    assert r.status_code == 404  # the state is single use

    account = (await accounts.get(f"/api/v1/connector-accounts/{aid}")).json()
    assert (account["status"], account["authorised"], account["status_reason"]) == ("active", True, "")
    assert account["health"]["token_expires_at"] is not None
    check = (await accounts.post(f"/api/v1/connector-accounts/{aid}/test")).json()
    assert check["ok"] is True and "token of" in check["detail"]  # the connector got ctx.access_token

    row = await _row(accounts, aid)
    async with owner_engine.connect() as conn:
        raw = (await conn.execute(select(ConnectorAccount.__table__).where(ConnectorAccount.__table__.c.id == row.id))).one()
    dumped = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in raw)
    assert b"at-secret-" not in dumped and b"rt-secret-" not in dumped and APP_SECRET.encode() not in dumped


async def test_a_refused_code_leaves_the_account_unauthorised(accounts: Accounts, token_server: TokenServer):
    created = await accounts.connect("test_shop", shop_id="s", app_secret=APP_SECRET, base_url=token_server.base_url)
    aid = created["id"]
    state = parse_qs(urlsplit((await accounts.post(f"/api/v1/connector-accounts/{aid}/authorize")).json()["authorize_url"]).query)["state"][0]
    r = await accounts.client.get("/oauth/connectors/callback", params={"state": state, "code": "stolen"})
    assert r.status_code == 303 and r.headers["location"].endswith("?authorisation=failed")
    account = (await accounts.get(f"/api/v1/connector-accounts/{aid}")).json()
    assert account["authorised"] is False and account["status"] == "paused"
    assert "invalid_grant" in account["health"]["last_error"] and APP_SECRET not in account["health"]["last_error"]
    state = parse_qs(urlsplit((await accounts.post(f"/api/v1/connector-accounts/{aid}/authorize")).json()["authorize_url"]).query)["state"][0]
    r = await accounts.client.get("/oauth/connectors/callback", params={"state": state, "error": "access_denied"})
    assert r.headers["location"].endswith("?authorisation=failed")


async def test_tokens_are_refreshed_before_expiry_and_a_refusal_pauses_and_alerts(
    accounts: Accounts, token_server: TokenServer
):
    aid, _ = await _authorised(accounts, token_server)
    kernel, env = accounts.kernel, accounts.app.state.jobs.env
    before = (await _row(accounts, aid)).oauth_tokens

    # not due yet (expires in an hour, the margin is 30 minutes): nothing happens
    with tenant_context(accounts.tenant.id):
        report = await oauth.refresh_due(kernel.db, kernel.keys, env.plugins, kernel.settings)
    assert report.refreshed == [] and len(token_server.requests) == 1

    await _expire_soon(accounts, aid, 10)
    tokens = set_job_context(env, None)
    try:
        with tenant_context(accounts.tenant.id):
            await refresh_connector_tokens()  # the periodic job itself
    finally:
        reset_job_context(tokens)
    assert token_server.requests[-1]["grant_type"] == ["refresh_token"]
    assert token_server.requests[-1]["refresh_token"][0].startswith("rt-secret-1-")
    row = await _row(accounts, aid)
    assert row.oauth_tokens != before and row.token_expires_at > utcnow() + dt.timedelta(minutes=50)

    # the channel is down while the token is still valid: tried again next time, still active
    token_server.refresh_mode = "down"
    await _expire_soon(accounts, aid, 10)
    with tenant_context(accounts.tenant.id):
        report = await oauth.refresh_due(kernel.db, kernel.keys, env.plugins, kernel.settings)
    assert [str(a) for a in report.retry_later] == [aid]
    health = (await accounts.get(f"/api/v1/connector-accounts/{aid}/health")).json()
    assert health["status"] == "active" and health["state"] == "failing"
    assert "rt-secret" not in health["last_error"] and "at-secret" not in health["last_error"]

    # the channel refuses the refresh token: paused, event, the owner is e-mailed
    token_server.refresh_mode = "refuse"
    with tenant_context(accounts.tenant.id):
        report = await oauth.refresh_due(kernel.db, kernel.keys, env.plugins, kernel.settings)
    assert [str(a) for a in report.paused] == [aid]
    await health_recorded()
    account = (await accounts.get(f"/api/v1/connector-accounts/{aid}")).json()
    assert (account["status"], account["status_reason"]) == ("paused", "token_refresh_failed")
    with tenant_context(accounts.tenant.id):
        async with kernel.db.transaction() as db:
            events = list((await db.execute(select(Event).where(Event.object_id == aid).order_by(Event.id))).scalars())
            alerts = list(
                (await db.execute(select(OutboxMessage).where(OutboxMessage.business_key.like(f"connector_paused:{aid}:%")))).scalars()
            )
    failed = [e for e in events if e.type == "connector.token_refresh_failed"]
    assert len(failed) == 1 and "invalid_grant" in failed[0].data["detail"]
    assert [e.type for e in events][-2:] == ["connector.account_paused", "connector.token_refresh_failed"]
    assert len(alerts) == 1
    payload = alerts[0].payload
    assert payload["template"] == "connector_paused" and payload["to"] == accounts.tenant.owner_email
    assert payload["params"]["link"].endswith(f"/console/connectors/accounts/{aid}")

    # a paused account is not refreshed again; authorising again makes it active
    with tenant_context(accounts.tenant.id):
        report = await oauth.refresh_due(kernel.db, kernel.keys, env.plugins, kernel.settings)
    assert report.paused == [] and report.refreshed == []
    state = parse_qs(urlsplit((await accounts.post(f"/api/v1/connector-accounts/{aid}/authorize")).json()["authorize_url"]).query)["state"][0]
    await accounts.client.get("/oauth/connectors/callback", params={"state": state, "code": token_server.good_code})
    assert (await accounts.get(f"/api/v1/connector-accounts/{aid}")).json()["status"] == "active"
