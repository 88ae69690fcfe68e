"""Idempotency-Key with Stripe semantics on POST /api/v1/*."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import func, select

from core.db.context import tenant_context
from core.http.models import IdempotencyRecord
from tenants.models import User


async def _count_users(kernel, tenant, email):
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            return await db.scalar(select(func.count()).select_from(User).where(User.email == email))


async def test_replay_returns_the_first_response_byte_identical(client, kernel, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant)
    headers = {**creds.headers, "Idempotency-Key": "invite-1"}
    body = {"email": "clerk@shop.example.com", "role": "operator"}
    first = await client.post("/api/v1/users", json=body, headers=headers)
    second = await client.post("/api/v1/users", json=body, headers=headers)
    assert first.status_code == 201
    assert second.status_code == 201
    assert second.content == first.content
    assert second.headers["idempotent-replayed"] == "true"
    assert await _count_users(kernel, tenant, "clerk@shop.example.com") == 1
    with tenant_context(tenant.id):  # the stored response (it holds the invite link) is encrypted at rest
        async with kernel.db.transaction() as db:
            stored = (await db.execute(select(IdempotencyRecord.response_body)
                                       .where(IdempotencyRecord.key == "invite-1"))).scalar_one()
    assert first.json()["invite_url"].encode() not in stored and b"clerk@shop" not in stored


async def test_same_key_with_a_different_body_is_422(client, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant)
    headers = {**creds.headers, "Idempotency-Key": "invite-2"}
    r1 = await client.post("/api/v1/users", json={"email": "a@shop.example.com", "role": "viewer"}, headers=headers)
    r2 = await client.post("/api/v1/users", json={"email": "b@shop.example.com", "role": "viewer"}, headers=headers)
    assert r1.status_code == 201
    assert r2.status_code == 422 and r2.json()["code"] == "idempotency_key_reused"


async def test_a_request_while_the_first_is_in_flight_gets_409(client, kernel, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant)
    body = b'{"email":"c@shop.example.com","role":"viewer"}'
    import hashlib

    fingerprint = hashlib.sha256(b"POST /api/v1/users\n" + body).hexdigest()
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:  # the first request's claim, still pending
            db.add(IdempotencyRecord(principal=f"client:{creds.client_id}", key="invite-3", method="POST",
                                     path="/api/v1/users", request_hash=fingerprint, status="pending",
                                     expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=24)))
    r = await client.post("/api/v1/users", content=body,
                          headers={**creds.headers, "Idempotency-Key": "invite-3", "content-type": "application/json"})
    assert r.status_code == 409 and r.json()["code"] == "idempotency_in_progress"
    assert r.headers["retry-after"]
    assert await _count_users(kernel, tenant, "c@shop.example.com") == 0


async def test_concurrent_duplicates_create_exactly_once(client, kernel, make_tenant, make_api_client):
    tenant = await make_tenant(plan="growth")
    creds = await make_api_client(tenant)
    headers = {**creds.headers, "Idempotency-Key": "invite-4"}
    body = {"email": "d@shop.example.com", "role": "viewer"}
    responses = await asyncio.gather(*[client.post("/api/v1/users", json=body, headers=headers) for _ in range(5)])
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}
    assert statuses.count(201) >= 1
    created = [r for r in responses if r.status_code == 201]
    assert all(r.content == created[0].content for r in created)
    assert await _count_users(kernel, tenant, "d@shop.example.com") == 1


async def test_failed_request_is_not_stored_so_a_retry_can_succeed(client, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant)
    headers = {**creds.headers, "Idempotency-Key": "invite-5"}
    bad = await client.post("/api/v1/users", json={"email": "not-an-email", "role": "viewer"}, headers=headers)
    assert bad.status_code == 422
    again = await client.post("/api/v1/users", json={"email": "not-an-email", "role": "viewer"}, headers=headers)
    assert again.status_code == 422 and again.content == bad.content


async def test_keys_are_scoped_per_client(client, make_tenant, make_api_client):
    tenant = await make_tenant(plan="growth")
    c1, c2 = await make_api_client(tenant), await make_api_client(tenant)
    r1 = await client.post("/api/v1/users", json={"email": "e@shop.example.com", "role": "viewer"},
                           headers={**c1.headers, "Idempotency-Key": "same"})
    r2 = await client.post("/api/v1/users", json={"email": "f@shop.example.com", "role": "viewer"},
                           headers={**c2.headers, "Idempotency-Key": "same"})
    assert (r1.status_code, r2.status_code) == (201, 201)
