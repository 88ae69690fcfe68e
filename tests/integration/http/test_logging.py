"""Access logs are JSON lines carrying the request id and the tenant id, never a token or secret."""

from __future__ import annotations

import io
import json

import structlog

from core.logging import configure_logging


async def test_access_log_has_request_and_tenant_ids_and_no_secrets(client, settings, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant)
    buffer = io.StringIO()
    configure_logging("INFO", json=True)
    processors = structlog.get_config()["processors"]
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(buffer), processors=processors)
    try:
        r = await client.get("/api/v1/tenant", headers={**creds.headers, "X-Request-ID": "req-abc-123"})
        assert r.headers["x-request-id"] == "req-abc-123"
    finally:
        configure_logging(settings.log_level, settings.log_json)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]
    access = [e for e in lines if e.get("event") == "request" and e.get("path") == "/api/v1/tenant"]
    assert access, buffer.getvalue()
    assert access[0]["request_id"] == "req-abc-123"
    assert access[0]["tenant_id"] == str(tenant.id)
    assert access[0]["status"] == 200
    text = buffer.getvalue()
    assert creds.token not in text and creds.client_secret not in text
