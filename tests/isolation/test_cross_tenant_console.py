"""The tenant console never reaches another tenant's objects: B's ids answer 404 and stay unchanged."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from core.db.context import tenant_context
from tenants.clients import create_client
from tenants.models import ApiClient, User
from tests.integration.console.conftest import Browser


async def test_console_of_a_cannot_read_or_change_b(app, client, kernel, make_tenant):
    a, b = await make_tenant(), await make_tenant()
    with tenant_context(b.id):
        async with kernel.db.transaction() as db:
            b_owner = (await db.execute(select(User.id).where(User.email == b.owner_email))).scalar_one()
            b_client, _secret = await create_client(db, "b-client", ["tenant:read"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local") as c:
        br = Browser(c)
        login = await br.console_login(a.slug, a.owner_email, a.owner_password)
        assert login.status_code in (200, 303)
        users_page = await br.get("/console/users")
        assert users_page.status_code == 200
        assert a.owner_email in users_page.text and b.owner_email not in users_page.text
        clients_page = await br.get("/console/clients")
        assert b_client.client_id not in clients_page.text

        r = await br.submit("/console/users", f"/console/users/{b_owner}/role", {"role": "viewer"})
        assert r.status_code == 404
        r = await br.submit("/console/users", f"/console/users/{b_owner}/disable", {})
        assert r.status_code == 404
        r = await br.submit("/console/clients", f"/console/clients/{b_client.id}/revoke", {})
        assert r.status_code == 404
        audit = await br.get("/console/audit")
        assert str(b_owner) not in audit.text and b.owner_email not in audit.text

    with tenant_context(b.id):
        async with kernel.db.transaction() as db:
            owner = (await db.execute(select(User).where(User.id == b_owner))).scalar_one()
            assert (owner.role, owner.status) == ("owner", "active")
            row = (await db.execute(select(ApiClient).where(ApiClient.id == b_client.id))).scalar_one()
            assert row.revoked_at is None
