"""Dead database connections are handled on use, not by a ping before every checkout (issue 13).

The pool has no ``pool_pre_ping`` (it cost a round trip per checkout). A connection the server closed while
it sat in the pool is replaced at checkout (the driver saw the socket close); one that died unseen fails
its request with 503 and ``Retry-After``, the pool is invalidated, and the next request works. Never a 500.
"""

from __future__ import annotations

import asyncio

import httpx
import msgspec
import pytest
from sqlalchemy import text

from core.db.session import Database, make_engine

pytestmark = pytest.mark.usefixtures("test_env")

_KILL_APP_BACKENDS = text(
    "select count(pg_terminate_backend(pid)) from pg_stat_activity "
    "where datname = current_database() and usename = 'kaquan_app' and pid <> pg_backend_pid()"
)


def _ok_or_503(r: httpx.Response) -> None:
    assert r.status_code in (200, 503), r.text
    if r.status_code == 503:
        assert r.json()["code"] == "service_unavailable" and int(r.headers["retry-after"]) > 0


def test_the_pool_pings_nothing(kernel):
    assert kernel.db.engine.pool._pre_ping is False


async def test_engine_settings_reach_the_pool_and_the_driver(test_env, settings):
    """``KAQUAN_DB_POOL_SIZE``, ``_MAX_OVERFLOW``, ``_STATEMENT_CACHE_SIZE`` and ``_PGBOUNCER`` on a real
    connection: the pool's size, asyncpg's and SQLAlchemy's statement caches, the statement names."""
    if test_env.backend != "postgresql":
        pytest.skip("needs PostgreSQL")
    tuned = msgspec.structs.replace(
        settings, db_pool_size=3, db_max_overflow=4, db_statement_cache_size=7, db_pgbouncer=False
    )
    bouncer = msgspec.structs.replace(tuned, db_pgbouncer=True)
    for config, cache in ((tuned, 7), (bouncer, 0)):
        db = Database.from_settings(config, test_env.owner_url)
        try:
            assert db.engine.pool.size() == 3 and db.engine.pool._max_overflow == 4  # type: ignore[attr-defined]
            async with db.engine.connect() as conn:
                await conn.execute(text("select 1"))
                adapted = (await conn.get_raw_connection()).dbapi_connection
                assert adapted.driver_connection._config.statement_cache_size == cache
                statements = adapted._prepared_statement_cache
                assert (statements is None) if cache == 0 else (statements.capacity == cache)
                # cached statements are named and stay on the server; uncached ones are unnamed: none stays
                named = (await conn.execute(text("select count(*) from pg_prepared_statements"))).scalar_one()
                assert (named == 0) if cache == 0 else (named > 0)
        finally:
            await db.dispose()


async def _app_backends(owner_engine) -> int:
    async with owner_engine.connect() as conn:
        killed = (await conn.execute(_KILL_APP_BACKENDS)).scalar_one()
        await conn.commit()
    return int(killed)


async def test_backends_terminated_between_requests(test_env, owner_engine, client, make_tenant, make_api_client):
    """``pg_terminate_backend`` on every app connection (what a restart or failover does): the next
    request gets its answer or a 503 with Retry-After, never a 500, and the one after it succeeds."""
    if test_env.backend != "postgresql":
        pytest.skip("needs PostgreSQL")
    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read"])
    # several requests at once: the pool holds several idle connections when they are killed
    for r in await asyncio.gather(*(client.get("/api/v1/tenant", headers=creds.headers) for _ in range(6))):
        assert r.status_code == 200, r.text
    assert await _app_backends(owner_engine) > 0
    await asyncio.sleep(0.05)  # the driver reads the server's goodbye
    _ok_or_503(await client.get("/api/v1/tenant", headers=creds.headers))
    r = await client.get("/api/v1/tenant", headers=creds.headers)
    assert r.status_code == 200, r.text


async def test_a_dead_connection_nobody_saw_close_is_503_then_recovers(
    test_env, owner_engine, app, kernel, client, make_tenant, make_api_client, monkeypatch
):
    """A connection that died unseen (a network cut: no socket close reached the driver) is found dead only
    when used: that request is a 503, the pool is invalidated, the next request reconnects."""
    if test_env.backend != "postgresql":
        pytest.skip("needs PostgreSQL")
    from core.db import session

    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read"])
    assert (await client.get("/api/v1/tenant", headers=creds.headers)).status_code == 200
    # The pool's other users must not meet a dead connection first (that invalidates the pool, and the
    # request below would get a fresh one): the relay pauses, the audit sealer finishes its last seal.
    relay = app.state.jobs.relay
    await relay.stop()
    try:
        await asyncio.sleep(0.5)
        pool = kernel.db.engine.pool
        invalidated = pool._invalidate_time
        monkeypatch.setattr(session, "_seen_closed", lambda _conn: False)  # the checkout sees nothing
        assert await _app_backends(owner_engine) > 0
        await asyncio.sleep(0.05)
        r = await client.get("/api/v1/tenant", headers=creds.headers)
        if test_env.settings.db_pgbouncer:
            _ok_or_503(r)  # PgBouncer keeps the client connection and takes another server connection
        else:
            assert pool._invalidate_time != invalidated, "the dead connection invalidates the pool"
            assert r.status_code == 503, r.text
            _ok_or_503(r)
        r = await client.get("/api/v1/tenant", headers=creds.headers)
        assert r.status_code == 200, r.text
    finally:
        relay.start()


async def test_checkout_replaces_a_connection_the_server_closed(test_env):
    """The engine alone: the pooled connection's backend is terminated; the next checkout gets a new one
    without an error and without any statement sent to find out."""
    if test_env.backend != "postgresql":
        pytest.skip("needs PostgreSQL")
    engine = make_engine(test_env.owner_url, pool_size=1, max_overflow=0)
    admin = make_engine(test_env.owner_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            pid = (await conn.execute(text("select pg_backend_pid()"))).scalar_one()
        async with admin.connect() as conn:
            assert (await conn.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})).scalar_one()
        await asyncio.sleep(0.05)
        async with engine.connect() as conn:
            assert (await conn.execute(text("select pg_backend_pid()"))).scalar_one() != pid
    finally:
        await engine.dispose()
        await admin.dispose()
