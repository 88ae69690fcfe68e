"""OAuth2 client credentials and bearer checks: scopes, expiry, revocation, suspended tenant."""

from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import update

from core.db.context import tenant_context
from tenants import clients
from tenants.clients import revoke_client
from tenants.models import AccessToken


async def test_client_credentials_token_reaches_the_api(client, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read"])
    r = await client.get("/api/v1/tenant", headers=creds.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tenant"]["slug"] == tenant.slug
    assert body["tenant"]["timezone"] == "Asia/Shanghai" and body["tenant"]["currency"] == "CNY"
    assert r.headers["ratelimit-limit"] and r.headers["ratelimit-remaining"]


async def test_form_client_auth_and_scope_narrowing(client, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read", "users:read"])
    r = await client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            "scope": "users:read",
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "users:read"
    token = r.json()["access_token"]
    assert (
        await client.get("/api/v1/users", headers={"Authorization": f"Bearer {token}"})
    ).status_code == 200
    denied = await client.get("/api/v1/tenant", headers={"Authorization": f"Bearer {token}"})
    assert denied.status_code == 403
    assert denied.headers["content-type"].startswith("application/problem+json")
    assert denied.json()["code"] == "insufficient_scope"


async def test_wrong_secret_unknown_scope_and_bad_grant_are_refused(client, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read"])
    r = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(creds.client_id, "kqs_wrong")
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "root:all"},
        auth=(creds.client_id, creds.client_secret),
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = await client.post(
        "/oauth/token", data={"grant_type": "password"}, auth=(creds.client_id, creds.client_secret)
    )
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"


async def test_missing_and_garbage_tokens_get_401_problem(client):
    r = await client.get("/api/v1/tenant")
    assert r.status_code == 401 and r.json()["code"] == "missing_token"
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = await client.get("/api/v1/tenant", headers={"Authorization": "Bearer nonsense"})
    assert r.status_code == 401 and r.json()["code"] == "invalid_token"


async def test_expired_token_is_refused(client, kernel, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read"])
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            await db.execute(
                update(AccessToken).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
            )
    r = await client.get("/api/v1/tenant", headers=creds.headers)
    assert r.status_code == 401 and r.json()["code"] == "token_expired"


async def test_revoked_client_loses_its_tokens_and_cannot_get_new_ones(
    client, kernel, make_tenant, make_api_client
):
    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read"])
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            await revoke_client(db, creds.client_pk)
    r = await client.get("/api/v1/tenant", headers=creds.headers)
    assert r.status_code == 401 and r.json()["code"] == "token_revoked"
    r = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(creds.client_id, creds.client_secret)
    )
    assert r.status_code in (400, 401)


async def test_suspended_tenant_is_refused_then_resumed(client, operator, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read"])
    r = await client.post(
        f"/api/platform/v1/tenants/{tenant.id}/suspend", json={"reason": "unpaid"}, headers=operator.headers
    )
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    r = await client.get("/api/v1/tenant", headers=creds.headers)
    assert r.status_code == 403 and r.json()["code"] == "tenant_suspended"
    r = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(creds.client_id, creds.client_secret)
    )
    assert r.status_code == 401
    r = await client.post(f"/api/platform/v1/tenants/{tenant.id}/resume", json={}, headers=operator.headers)
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert (await client.get("/api/v1/tenant", headers=creds.headers)).status_code == 200


async def test_asking_only_for_scopes_the_client_lacks_is_invalid_scope(client, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read"])
    r = await client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "users:read"},
                          auth=(creds.client_id, creds.client_secret))
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


async def test_a_token_revoked_by_another_process_stops_working_within_the_principal_cache_time(
    client, kernel, make_tenant, make_api_client, monkeypatch
):
    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read"])
    assert (await client.get("/api/v1/tenant", headers=creds.headers)).status_code == 200  # now cached
    with tenant_context(tenant.id):  # a revocation this process did not see (another API process)
        async with kernel.db.transaction() as db:
            await db.execute(update(AccessToken).values(revoked_at=dt.datetime.now(dt.UTC)))
    assert (await client.get("/api/v1/tenant", headers=creds.headers)).status_code == 200
    clock = time.monotonic() + clients.PRINCIPAL_CACHE_SECONDS + 0.1
    monkeypatch.setattr(clients, "_clock", lambda: clock)  # the cache time has passed
    r = await client.get("/api/v1/tenant", headers=creds.headers)
    assert r.status_code == 401 and r.json()["code"] == "token_revoked"
