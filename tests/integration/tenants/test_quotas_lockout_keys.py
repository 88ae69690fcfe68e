"""Plan quotas, login lockout, rate limits and master-key rotation."""

from __future__ import annotations

import base64
import os

import pytest

from core.crypto.envelope import MasterKeyring
from core.crypto.services import KeyService
from core.db.context import tenant_context
from core.errors import QuotaExceeded
from tenants.clients import create_client
from tenants.users import create_invited_user


async def test_user_and_api_client_quotas(kernel, make_tenant):
    tenant = await make_tenant()  # starter: 5 users, 2 API clients
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            for i in range(4):
                await create_invited_user(kernel, db, f"u{i}@quota.example.com", "viewer", "")
        async with kernel.db.transaction() as db:
            with pytest.raises(QuotaExceeded) as exc:
                await create_invited_user(kernel, db, "u5@quota.example.com", "viewer", "")
            assert exc.value.extra == {"quota": "users", "limit": 5, "used": 5}
        async with kernel.db.transaction() as db:
            await create_client(db, "one", ["tenant:read"])
            await create_client(db, "two", ["tenant:read"])
        async with kernel.db.transaction() as db:
            with pytest.raises(QuotaExceeded):
                await create_client(db, "three", ["tenant:read"])


async def test_quota_error_over_the_api(client, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant)
    for i in range(4):
        r = await client.post("/api/v1/users", json={"email": f"q{i}@api.example.com", "role": "viewer"},
                              headers=creds.headers)
        assert r.status_code == 201
    r = await client.post("/api/v1/users", json={"email": "q9@api.example.com", "role": "viewer"}, headers=creds.headers)
    assert r.status_code == 403 and r.json()["code"] == "quota_exceeded" and r.json()["limit"] == 5


async def test_operator_lockout_after_repeated_failures(client, kernel, settings):
    from tenants.operators import create_operator

    async with kernel.db.transaction() as db:
        await create_operator(db, "lock@ops.example.com", "right-password-1")
    for _ in range(settings.login_max_failures):
        r = await client.post("/api/platform/v1/login", json={"email": "lock@ops.example.com", "password": "wrong"})
        assert r.status_code == 401 and r.json()["code"] == "invalid_login"
    r = await client.post("/api/platform/v1/login", json={"email": "lock@ops.example.com", "password": "right-password-1"})
    assert r.status_code == 423 and r.json()["code"] == "account_locked"
    assert int(r.headers["retry-after"]) > 0


async def test_tenant_user_lockout(kernel, settings, make_tenant):
    from core.errors import Locked, Unauthorized
    from tenants.users import authenticate_user

    tenant = await make_tenant()
    for _ in range(settings.login_max_failures):
        with pytest.raises(Unauthorized):
            await authenticate_user(kernel, tenant.slug, tenant.owner_email, "nope")
    with pytest.raises(Locked):
        await authenticate_user(kernel, tenant.slug, tenant.owner_email, tenant.owner_password)


async def test_rate_limit_per_tenant_plan(client, operator, make_tenant, make_api_client):
    r = await client.post("/api/platform/v1/plans", headers=operator.headers,
                          json={"code": f"tiny{os.getpid()}", "name": "Tiny", "requests_per_minute": 3})
    assert r.status_code == 201, r.text
    tenant = await make_tenant(plan=f"tiny{os.getpid()}")
    creds = await make_api_client(tenant)
    seen = [await client.get("/api/v1/tenant", headers=creds.headers) for _ in range(4)]
    assert [s.status_code for s in seen[:3]] == [200, 200, 200]
    assert seen[0].headers["ratelimit-limit"] == "3" and seen[2].headers["ratelimit-remaining"] == "0"
    limited = seen[3]
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1


async def test_master_key_rotation_rewraps_and_keeps_data_readable(kernel, make_tenant):
    tenant = await make_tenant()
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            blob = (await kernel.keys.cipher(db)).encrypt(b"secret card pin")
    old_spec = kernel.settings.master_key
    new_spec = "mk-new:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    rotated = KeyService(MasterKeyring.from_specs(new_spec, previous=old_spec))
    count = await rotated.rotate(kernel.db)
    assert count >= 1
    assert await rotated.rotate(kernel.db) == 0  # idempotent
    only_new = KeyService(MasterKeyring.from_specs(new_spec))
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            assert (await only_new.cipher(db)).decrypt(blob) == b"secret card pin"
    # put the keys back under the session's master key for the remaining tests
    back = KeyService(MasterKeyring.from_specs(old_spec, previous=new_spec))
    assert await back.rotate(kernel.db) >= 1
