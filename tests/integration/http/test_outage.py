"""A database or broker outage answers 503 with Retry-After, never 500 (issue 9, item 23).

An app pointed at a closed port is a real outage (connection refused) without stopping anything shared;
the driver errors of an outage mid-request (connection lost, server shutting down, broker gone) are
raised through real routes, in the API and on the console.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from litestar import Litestar

from core.app import create_app


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # released again: nothing listens there


def _is_503(r: httpx.Response) -> dict:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["retry-after"]) > 0
    body = r.json()
    assert body["code"] == "service_unavailable" and body["status"] == 503 and body["detail"]
    assert "Traceback" not in r.text
    return body


@pytest.fixture
async def down_app(settings, tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its database on a port where nothing listens (its lifespan is not started)."""
    url = f"postgresql+asyncpg://kaquan_app:x@127.0.0.1:{_closed_port()}/kaquan"
    broken = msgspec.structs.replace(
        settings, database_url=url, database_owner_url=url, data_dir=str(tmp_path), redis_url=""
    )
    app: Litestar = create_app(broken)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://down.local") as c:
        yield c
    await app.state.kernel.close()


async def test_database_unreachable_is_503_with_retry_after(down_app):
    r = await down_app.post(
        "/api/platform/v1/login",
        json={"email": "op@example.com", "password": "whatever-1"},
        headers={"Accept-Language": "en"},
    )
    assert "nothing was changed" in _is_503(r)["detail"]
    token = "kqat_" + "0" * 32 + "_" + "x" * 20
    r = await down_app.get("/api/v1/tenant", headers={"Authorization": f"Bearer {token}"})
    assert "数据库" in _is_503(r)["detail"]
    r = await down_app.get("/ready")
    assert r.status_code == 503 and r.json()["checks"]["database"].startswith("error")


def _outages() -> list[BaseException]:
    import asyncpg.exceptions as apg
    import redis.exceptions as rex
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    lost = DBAPIError("SELECT 1", {}, apg.ConnectionDoesNotExistError("connection was closed in the middle of operation"))
    lost.connection_invalidated = True
    return [
        OperationalError("SELECT 1", {}, ConnectionRefusedError(111, "Connection refused")),
        InterfaceError("SELECT 1", {}, Exception("connection is closed")),
        lost,
        DBAPIError("SELECT 1", {}, apg.CannotConnectNowError("the database system is starting up")),
        DBAPIError("SELECT 1", {}, apg.AdminShutdownError("terminating connection due to administrator command")),
        apg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ConnectionResetError(104, "Connection reset by peer"),
        ConnectionRefusedError(111, "Connect call failed"),
        rex.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
        rex.TimeoutError("Timeout reading from socket"),
    ]


@pytest.mark.parametrize("error", _outages(), ids=lambda e: type(e).__name__)
async def test_outage_errors_mid_request_are_503(client, make_tenant, make_api_client, monkeypatch, error):
    from tenants import api_tenant

    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read"])

    async def outage(*_a, **_k):
        raise error

    monkeypatch.setattr(api_tenant.registry, "get_tenant", outage)
    _is_503(await client.get("/api/v1/tenant", headers=creds.headers))


async def test_a_bug_is_still_a_500(client, make_tenant, make_api_client, monkeypatch):
    from tenants import api_tenant

    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read"])

    async def bug(*_a, **_k):
        raise KeyError("not an outage")

    monkeypatch.setattr(api_tenant.registry, "get_tenant", bug)
    r = await client.get("/api/v1/tenant", headers=creds.headers)
    assert r.status_code == 500 and r.json()["code"] == "internal_error"


async def test_console_shows_a_readable_503_page(app, client, make_tenant, monkeypatch):
    import asyncpg.exceptions as apg

    from admin_ui import catalog_pages
    from tests.integration.console.conftest import Browser, text_of

    tenant = await make_tenant()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local") as c:
        browser = Browser(c)
        await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)

        async def outage(*_a, **_k):
            raise apg.ConnectionDoesNotExistError("connection was closed in the middle of operation")

        monkeypatch.setattr(catalog_pages, "list_products", outage)
        r = await browser.get("/console/products")
        assert r.status_code == 503 and r.headers["content-type"].startswith("text/html")
        assert int(r.headers["retry-after"]) > 0
        assert "服务暂时不可用" in text_of(r.text) and "请稍后重试" in text_of(r.text)
        r = await browser.get("/console/products", headers={"Accept-Language": "en"}, cookies={"lang": "en"})
        assert "try again in a moment" in text_of(r.text)


async def test_database_lost_at_commit_is_503_and_nothing_is_stored(client, make_tenant, make_api_client, monkeypatch):
    import sys

    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.ext.asyncio import AsyncSession

    tenant = await make_tenant()
    creds = await make_api_client(tenant)
    real_commit = AsyncSession.commit

    async def commit(self):
        if sys._getframe(1).f_code.co_name == "send_wrapper":  # the commit just before the answer
            lost = DBAPIError("COMMIT", {}, ConnectionResetError(104, "Connection reset by peer"))
            lost.connection_invalidated = True
            raise lost
        return await real_commit(self)

    monkeypatch.setattr(AsyncSession, "commit", commit)
    r = await client.post("/api/v1/members", headers=creds.headers, json={"phone": "13800138077", "name": "lost"})
    _is_503(r)
    monkeypatch.setattr(AsyncSession, "commit", real_commit)
    r = await client.get("/api/v1/members", headers=creds.headers, params={"phone": "13800138077"})
    assert r.status_code == 200 and r.json()["items"] == []


async def test_postgresql_connection_killed_mid_request_is_503_then_recovers(
    client, test_env, make_tenant, make_api_client, monkeypatch
):
    """On this run's own throwaway database: the request's backend is terminated (as a PostgreSQL
    shutdown does) between two of its queries; the client gets 503, and the next request succeeds."""
    if test_env.backend != "postgresql":
        pytest.skip("needs PostgreSQL")
    from sqlalchemy import text

    from tenants import api_tenant, registry

    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read"])
    real = registry.get_tenant

    async def killed_midway(db, tenant_id):
        await db.execute(text("select pg_terminate_backend(pg_backend_pid())"))
        return await real(db, tenant_id)

    monkeypatch.setattr(api_tenant.registry, "get_tenant", killed_midway)
    _is_503(await client.get("/api/v1/tenant", headers=creds.headers))
    monkeypatch.setattr(api_tenant.registry, "get_tenant", real)
    r = await client.get("/api/v1/tenant", headers=creds.headers)
    assert r.status_code == 200, r.text
