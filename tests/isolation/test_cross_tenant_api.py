"""Two tenants, every API endpoint of the foundation: A can never read, list or change B's objects,
and B's objects answer 404 (not 403) so their existence does not leak."""

from __future__ import annotations

from sqlalchemy import select

from core.db.context import tenant_context
from tenants.models import User


async def _owner_id(kernel, tenant):
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            return (await db.execute(select(User.id).where(User.email == tenant.owner_email))).scalar_one()


async def test_tenant_api_never_crosses_tenants(client, kernel, make_tenant, make_api_client):
    a, b = await make_tenant(), await make_tenant()
    ca = await make_api_client(a)
    b_owner = await _owner_id(kernel, b)

    profile = (await client.get("/api/v1/tenant", headers=ca.headers)).json()
    assert profile["tenant"]["id"] == str(a.id)

    users = (await client.get("/api/v1/users", headers=ca.headers)).json()
    assert {u["email"] for u in users} == {a.owner_email}

    r = await client.get(f"/api/v1/users/{b_owner}", headers=ca.headers)
    assert r.status_code == 404 and r.json()["code"] == "user_not_found"

    # inviting B's owner e-mail in A creates A's own user, never touches B
    r = await client.post("/api/v1/users", json={"email": b.owner_email, "role": "viewer"}, headers=ca.headers)
    assert r.status_code == 201
    with tenant_context(b.id):
        async with kernel.db.transaction() as db:
            b_users = (await db.execute(select(User.email, User.role))).all()
    assert b_users == [(b.owner_email, "owner")]

    events = (await client.get("/api/v1/audit/events?limit=500", headers=ca.headers)).json()["items"]
    assert events and all(e["object_id"] != str(b.id) for e in events)
    assert all(e["object_id"] != str(b_owner) for e in events)
    report = (await client.get("/api/v1/audit/verify", headers=ca.headers)).json()
    assert report["tenant_id"] == str(a.id) and report["ok"] is True


async def test_a_token_cannot_be_replayed_against_another_tenant(client, make_tenant, make_api_client):
    a, b = await make_tenant(), await make_tenant()
    ca = await make_api_client(a)
    # forge a token that claims tenant B but carries A's secret part: refused
    secret = ca.token.split("_", 2)[2]
    forged = f"kqat_{b.id.hex}_{secret}"
    r = await client.get("/api/v1/tenant", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401


async def test_orm_refuses_tenant_queries_without_a_tenant(kernel):
    import pytest

    from core.db.context import TenantContextMissing

    async with kernel.db.transaction() as db:
        with pytest.raises(TenantContextMissing):
            await db.execute(select(User))


async def test_operator_api_tenant_lookup_404_for_unknown(client, operator):
    import uuid

    r = await client.get(f"/api/platform/v1/tenants/{uuid.uuid4()}", headers=operator.headers)
    assert r.status_code == 404 and r.json()["code"] == "tenant_not_found"
    r = await client.get("/api/platform/v1/tenants")
    assert r.status_code == 401
