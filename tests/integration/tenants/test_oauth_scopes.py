"""``POST /oauth/token`` scope handling: each scope once, in order; unknown scopes are ``invalid_scope``."""

from __future__ import annotations

from sqlalchemy import select

from core.db.context import tenant_context
from tenants.models import AccessToken
from tenants.security import digest


async def test_repeated_scopes_are_granted_once_in_sorted_order(client, kernel, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read", "users:read"])
    asked = " ".join(["users:read", "tenant:read"] * 300)
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": asked},
        auth=(creds.client_id, creds.client_secret),
    )
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "tenant:read users:read"
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            stored = (
                await db.execute(
                    select(AccessToken.scopes).where(AccessToken.token_digest == digest(r.json()["access_token"]))
                )
            ).scalar_one()
    assert stored == ["tenant:read", "users:read"]


async def test_scopes_the_client_lacks_are_dropped_and_each_granted_scope_listed_once(
    client, make_tenant, make_api_client
):
    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read"])
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "tenant:read users:read tenant:read"},
        auth=(creds.client_id, creds.client_secret),
    )
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "tenant:read"


async def test_an_unknown_scope_among_known_ones_is_refused_as_invalid_scope(client, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read"])
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "tenant:read root:all tenant:read"},
        auth=(creds.client_id, creds.client_secret),
    )
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "invalid_scope" and body["code"] == "oauth_invalid_scope"
    assert "root:all" in body["error_description"]
    assert r.headers["content-type"].startswith("application/json")


async def test_an_unknown_scope_with_a_wrong_secret_is_still_invalid_client(client, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read"])
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "root:all"},
        auth=(creds.client_id, "kqs_wrong"),
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


async def test_scope_answers_come_only_after_the_client_has_authenticated(client, make_tenant, make_api_client):
    """A wrong secret is 401 whatever the scope asked, so scopes cannot be probed without the secret."""
    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read"])
    for scope in ("users:read", "tenant:read", "root:all"):
        r = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=(creds.client_id, "kqs_wrong"),
        )
        assert r.status_code == 401 and r.json()["error"] == "invalid_client", (scope, r.text)
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "users:read users:read"},
        auth=(creds.client_id, creds.client_secret),
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    assert r.json()["error_description"] == "The client holds none of the requested scopes"
