"""Bad input always gets a clear problem+json, never a 500."""

from __future__ import annotations

import pytest


def _is_problem(r, status, code):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == code and body["status"] == status and body["detail"]
    assert "Traceback" not in r.text
    return body


async def test_duplicate_slug_is_409(client, operator, make_tenant):
    t = await make_tenant()
    r = await client.post("/api/platform/v1/tenants", headers=operator.headers,
                          json={"name": "Dup", "slug": t.slug, "owner_email": "o@dup.example.com"})
    _is_problem(r, 409, "slug_taken")


@pytest.mark.parametrize(("field", "value", "code"), [
    ("owner_email", "not-an-email", "validation_failed"),
    ("timezone", "Mars/Olympus", "validation_failed"),
    ("currency", "XXQ", "validation_failed"),
    ("plan", "platinum-unknown", "unknown_plan"),
])
async def test_invalid_fields_are_422_with_the_field_named(client, operator, field, value, code):
    body = {"name": "Bad", "slug": f"bad-{field.replace('_', '-')}", "owner_email": "o@bad.example.com", field: value}
    r = await client.post("/api/platform/v1/tenants", headers=operator.headers, json=body)
    problem = _is_problem(r, 422, code)
    if code == "validation_failed":
        assert problem["errors"][0]["field"] == field


async def test_english_detail_when_asked(client, operator):
    r = await client.post("/api/platform/v1/tenants", json={"name": "x", "slug": "bad-tz-en",
                          "owner_email": "o@x.example.com", "timezone": "Nowhere"},
                          headers={**operator.headers, "Accept-Language": "en-US,en;q=0.9"})
    assert "Unknown timezone" in r.json()["detail"]
    r = await client.post("/api/platform/v1/tenants", json={"name": "x", "slug": "bad-tz-zh",
                          "owner_email": "o@x.example.com", "timezone": "Nowhere"}, headers=operator.headers)
    assert "未知时区" in r.json()["detail"]


async def test_malformed_json_is_400(client, operator):
    r = await client.post("/api/platform/v1/tenants", content=b'{"name": "x",', headers={
        **operator.headers, "content-type": "application/json"})
    _is_problem(r, 400, "malformed_json")


async def test_unknown_fields_and_wrong_types_are_422(client, operator):
    r = await client.post("/api/platform/v1/tenants", headers=operator.headers,
                          json={"name": "x", "slug": "unknown-field", "owner_email": "o@x.example.com", "colour": "red"})
    body = _is_problem(r, 422, "validation_failed")
    assert body["errors"][0]["field"] == "colour" and body["errors"][0]["code"] == "unknown_field"
    r = await client.post("/api/platform/v1/plans", headers=operator.headers,
                          json={"code": "typed", "name": "T", "max_users": "many"})
    body = _is_problem(r, 422, "validation_failed")
    assert body["errors"][0]["field"] == "max_users"


async def test_missing_required_field_and_bad_slug_pattern(client, operator):
    r = await client.post("/api/platform/v1/tenants", headers=operator.headers, json={"name": "x"})
    _is_problem(r, 422, "validation_failed")
    r = await client.post("/api/platform/v1/tenants", headers=operator.headers,
                          json={"name": "x", "slug": "Bad Slug!", "owner_email": "o@x.example.com"})
    _is_problem(r, 422, "validation_failed")


async def test_body_over_the_limit_is_413(client, operator, settings, make_tenant, make_api_client):
    big = b'{"name": "' + b"x" * (settings.max_body_bytes + 10) + b'"}'
    r = await client.post("/api/platform/v1/tenants", content=big,
                          headers={**operator.headers, "content-type": "application/json"})
    _is_problem(r, 413, "payload_too_large")
    tenant = await make_tenant()
    creds = await make_api_client(tenant)
    r = await client.post("/api/v1/users", content=big, headers={
        **creds.headers, "content-type": "application/json", "Idempotency-Key": "big"})
    _is_problem(r, 413, "payload_too_large")


async def test_unknown_route_and_wrong_method(client, operator):
    _is_problem(await client.get("/api/platform/v1/nothing-here", headers=operator.headers), 404, "not_found")
    _is_problem(await client.delete("/api/platform/v1/tenants", headers=operator.headers), 405, "method_not_allowed")


async def test_bad_uuid_in_path_is_404_or_400_not_500(client, operator):
    r = await client.get("/api/platform/v1/tenants/not-a-uuid", headers=operator.headers)
    assert r.status_code in (400, 404) and r.headers["content-type"].startswith("application/problem+json")


async def test_an_exhausted_database_pool_is_503_busy_not_500(client, make_tenant, make_api_client, monkeypatch):
    """Overload (no pooled connection within the timeout) is answered 503 with Retry-After, never a 500."""
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from tenants import api_tenant

    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read"])

    async def no_connection(*_a, **_k):
        raise PoolTimeout("QueuePool limit of size 10 overflow 20 reached, connection timed out, timeout 30.00")

    monkeypatch.setattr(api_tenant.registry, "get_tenant", no_connection)
    r = await client.get("/api/v1/tenant", headers={"Authorization": f"Bearer {creds.token}", "Accept-Language": "en"})
    body = _is_problem(r, 503, "server_busy")
    assert r.headers["retry-after"] == "1" and "nothing was changed" in body["detail"]
