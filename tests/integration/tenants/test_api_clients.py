"""API clients managed over the API (``clients:manage``) and the CLI: secret once, scopes never escalate,
plan quota, audit, tenant isolation; console viewers are refused."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
from click.testing import CliRunner

from tenants.scopes import SCOPES
from tests.integration.console.conftest import Browser

MANAGE = ["clients:manage", "tenant:read", "grants:read", "audit:read"]


async def _token(client: httpx.AsyncClient, client_id: str, secret: str) -> httpx.Response:
    return await client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))


async def test_create_shows_the_secret_once_and_the_new_client_works(client: Any, make_tenant: Any,
                                                                       make_api_client: Any) -> None:
    tenant = await make_tenant(plan="growth")
    admin = await make_api_client(tenant, MANAGE)
    r = await client.post("/api/v1/clients", json={"name": "POS 收银", "scopes": ["tenant:read"]},
                          headers=admin.headers)
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    created = r.json()
    secret, new = created["client_secret"], created["client"]
    assert secret.startswith("kqs") and new["scopes"] == ["tenant:read"] and new["name"] == "POS 收银"

    token = await _token(client, new["client_id"], secret)
    assert token.status_code == 200, token.text
    me = await client.get("/api/v1/tenant", headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    assert me.status_code == 200

    listed = await client.get("/api/v1/clients", headers=admin.headers)
    one = await client.get(f"/api/v1/clients/{new['id']}", headers=admin.headers)
    assert listed.status_code == one.status_code == 200
    assert new["client_id"] in listed.text and one.json()["client_id"] == new["client_id"]
    for answer in (listed, one):  # the secret is never shown again
        assert secret not in answer.text and "secret" not in answer.text

    events = await client.get("/api/v1/audit/events", headers=admin.headers)
    created_events = [e for e in events.json()["items"] if e["action"] == "api_client.created"
                      and e["object_id"] == new["id"]]
    assert len(created_events) == 1
    assert created_events[0]["actor_type"] == "client" and created_events[0]["actor_id"] == admin.client_id
    assert secret not in events.text


async def test_a_client_without_clients_manage_is_refused(client: Any, make_tenant: Any,
                                                          make_api_client: Any) -> None:
    tenant = await make_tenant()
    viewer = await make_api_client(tenant, sorted(s for s in SCOPES if s != "clients:manage"))
    some_id = uuid.uuid4()
    for method, url, body in (("GET", "/api/v1/clients", None),
                              ("POST", "/api/v1/clients", {"name": "x", "scopes": ["tenant:read"]}),
                              ("GET", f"/api/v1/clients/{some_id}", None),
                              ("POST", f"/api/v1/clients/{some_id}/revoke", None)):
        r = await client.request(method, url, json=body, headers=viewer.headers)
        assert r.status_code == 403 and r.json()["code"] == "insufficient_scope", (url, r.text)
    assert (await client.get("/api/v1/clients")).status_code == 401


async def test_scopes_never_escalate_through_the_api(client: Any, make_tenant: Any, make_api_client: Any) -> None:
    tenant = await make_tenant(plan="growth")
    admin = await make_api_client(tenant, MANAGE)
    cases = [
        (["tenant:read", "clients:manage"], 403, "scope_not_grantable"),
        (["tenant:read", "codes:reveal"], 403, "scope_exceeds_caller"),
        (["no:such"], 422, "validation_failed"),
        ([], 422, "validation_failed"),
    ]
    for scopes, status, code in cases:
        r = await client.post("/api/v1/clients", json={"name": "bad", "scopes": scopes}, headers=admin.headers)
        assert r.status_code == status and r.json()["code"] == code, (scopes, r.text)
    # a token asked for with fewer scopes than its client can only give those
    narrow = await client.post("/oauth/token", data={"grant_type": "client_credentials",
                                                     "scope": "clients:manage tenant:read"},
                               auth=(admin.client_id, admin.client_secret))
    headers = {"Authorization": f"Bearer {narrow.json()['access_token']}"}
    r = await client.post("/api/v1/clients", json={"name": "g", "scopes": ["grants:read"]}, headers=headers)
    assert r.status_code == 403 and r.json()["code"] == "scope_exceeds_caller"
    names = [c["name"] for c in (await client.get("/api/v1/clients", headers=admin.headers)).json()]
    assert "bad" not in names and "g" not in names


async def test_idempotency_key_is_refused_so_the_secret_is_never_replayed(client: Any, make_tenant: Any,
                                                                         make_api_client: Any) -> None:
    tenant = await make_tenant(plan="growth")
    admin = await make_api_client(tenant, MANAGE)
    body = {"name": "replayed", "scopes": ["tenant:read"]}
    for _ in range(2):
        r = await client.post("/api/v1/clients", json=body, headers={**admin.headers, "Idempotency-Key": "k-1"})
        assert r.status_code == 400 and r.json()["code"] == "idempotency_key_not_supported"
        assert "kqs" not in r.text
    names = [c["name"] for c in (await client.get("/api/v1/clients", headers=admin.headers)).json()]
    assert "replayed" not in names


async def test_plan_quota_is_honoured(client: Any, make_tenant: Any, make_api_client: Any) -> None:
    tenant = await make_tenant()  # starter: 2 API clients, one of them is the caller
    admin = await make_api_client(tenant, MANAGE)
    r = await client.post("/api/v1/clients", json={"name": "second", "scopes": ["tenant:read"]}, headers=admin.headers)
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/clients", json={"name": "third", "scopes": ["tenant:read"]}, headers=admin.headers)
    assert r.status_code == 403 and r.json()["code"] == "quota_exceeded" and r.json()["limit"] == 2
    assert len((await client.get("/api/v1/clients", headers=admin.headers)).json()) == 2


async def test_revoke_ends_the_client_and_cannot_reach_stronger_ones(client: Any, make_tenant: Any,
                                                                     make_api_client: Any) -> None:
    tenant = await make_tenant(plan="growth")
    admin = await make_api_client(tenant, MANAGE)
    stronger = await make_api_client(tenant, ["codes:reveal", "tenant:read"])
    made = (await client.post("/api/v1/clients", json={"name": "pos", "scopes": ["tenant:read"]},
                              headers=admin.headers)).json()
    token = (await _token(client, made["client"]["client_id"], made["client_secret"])).json()["access_token"]

    r = await client.post(f"/api/v1/clients/{made['client']['id']}/revoke", headers=admin.headers)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    r = await client.get("/api/v1/tenant", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json()["code"] == "token_revoked"
    assert (await _token(client, made["client"]["client_id"], made["client_secret"])).status_code in (400, 401)

    r = await client.post(f"/api/v1/clients/{stronger.client_pk}/revoke", headers=admin.headers)
    assert r.status_code == 403 and r.json()["code"] == "client_exceeds_caller"
    assert (await client.get("/api/v1/tenant", headers=stronger.headers)).status_code == 200


async def test_tenant_a_cannot_see_or_revoke_tenant_b_clients(client: Any, make_tenant: Any,
                                                              make_api_client: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    a_admin = await make_api_client(a, MANAGE)
    b_client = await make_api_client(b, ["tenant:read"])
    assert (await client.get(f"/api/v1/clients/{b_client.client_pk}", headers=a_admin.headers)).status_code == 404
    r = await client.post(f"/api/v1/clients/{b_client.client_pk}/revoke", headers=a_admin.headers)
    assert r.status_code == 404 and r.json()["code"] == "api_client_not_found"
    assert b_client.client_id not in (await client.get("/api/v1/clients", headers=a_admin.headers)).text
    assert (await client.get("/api/v1/tenant", headers=b_client.headers)).status_code == 200


async def test_console_viewer_cannot_manage_clients(app: Any, make_tenant: Any, kernel: Any) -> None:
    from core.db.context import tenant_context
    from tenants.users import accept_invite, create_invited_user

    tenant = await make_tenant()
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            _user, url = await create_invited_user(kernel, db, f"viewer@{tenant.slug}.example.com", "viewer", "")
        async with kernel.db.transaction() as db:
            await accept_invite(db, url.rsplit("/", 1)[1], "viewer-password-1")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local") as c:
        browser = Browser(c)
        r = await browser.console_login(tenant.slug, f"viewer@{tenant.slug}.example.com", "viewer-password-1")
        assert r.status_code == 303, r.text
        assert (await c.get("/console/clients/")).status_code == 403
        dashboard = await c.get("/console/")
        r = await c.post("/console/clients/", data={"name": "x", "scopes": ["tenant:read"],
                                                    "_csrf_token": _csrf(dashboard.text)})
        assert r.status_code == 403


def _csrf(html: str) -> str:
    match = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    return match.group(1) if match else ""


async def test_cli_creates_lists_and_revokes_clients(client: Any, make_tenant: Any, settings: Any) -> None:
    from core.cli import main

    tenant = await make_tenant(plan="growth")
    env = {
        "KAQUAN_DATABASE_URL": settings.database_url,
        "KAQUAN_DATA_DIR": settings.data_dir,
        "KAQUAN_MASTER_KEY": settings.master_key,
        "KAQUAN_REDIS_URL": "",
        "KAQUAN_LOG_LEVEL": "WARNING",
        "LANG": "en_US.UTF-8",
    }
    runner = CliRunner()

    def cli(*args: str) -> Any:
        return runner.invoke(main, list(args), env=env)

    result = await asyncio.to_thread(cli, "clients", "create", "--tenant", tenant.slug, "--name", "erp",
                                     "--scope", "tenant:read", "--scope", "clients:manage")
    assert result.exit_code == 0, result.output
    client_id = re.search(r"client_id\s+(\S+)", result.output).group(1)  # type: ignore[union-attr]
    secret = re.search(r"client_secret\s+(\S+)", result.output).group(1)  # type: ignore[union-attr]
    assert (await _token(client, client_id, secret)).status_code == 200

    listed = await asyncio.to_thread(cli, "clients", "list", "--tenant", tenant.slug)
    assert listed.exit_code == 0 and client_id in listed.output and secret not in listed.output

    bad = await asyncio.to_thread(cli, "clients", "create", "--tenant", tenant.slug, "--name", "x", "--scope", "no:such")
    assert bad.exit_code == 1 and "validation_failed" in bad.output
    missing = await asyncio.to_thread(cli, "clients", "create", "--tenant", "no-such-tenant", "--name", "x",
                                      "--scope", "tenant:read")
    assert missing.exit_code == 1 and "tenant_not_found" in missing.output

    revoked = await asyncio.to_thread(cli, "clients", "revoke", "--tenant", tenant.slug, client_id)
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert (await _token(client, client_id, secret)).status_code in (400, 401)
