"""kaquan behind PgBouncer in transaction pooling mode (issue 13): ``KAQUAN_DB_PGBOUNCER`` makes asyncpg
safe there, and the per-transaction RLS context does not leak between clients sharing a server connection.

Each test starts its own throwaway PgBouncer (``tests/pgbouncer.py``) with one server connection, so every
client's transactions run on the same PostgreSQL session. CI runs a slice of the suite through one too
(``KAQUAN_TEST_PGBOUNCER=1`` in ``.ci/run``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core.db.session import make_engine
from tests.pgbouncer import Bouncer, pgbouncer_binary, running_pgbouncer


@pytest.fixture
def bouncer(test_env, request) -> Iterator[Bouncer]:
    """A PgBouncer with ``request.param`` server connections (default 1)."""
    if test_env.backend != "postgresql":
        pytest.skip("needs PostgreSQL")
    if pgbouncer_binary() is None:
        if os.environ.get("KAQUAN_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail("pgbouncer is not installed (apt-get install pgbouncer)", pytrace=False)
        pytest.skip("pgbouncer is not installed")
    with running_pgbouncer(test_env.owner_url, pool_size=getattr(request, "param", 1)) as b:
        yield b


async def _transaction(engine, i: int) -> tuple[str, int]:
    async with engine.begin() as conn:
        await conn.execute(text("select set_config('app.tenant_id', :v, true)"), {"v": f"tenant-{i}"})
        await conn.execute(text("select count(*) from pg_class where relname = :n"), {"n": f"t{i % 3}"})
        row = (await conn.execute(text("select current_setting('app.tenant_id'), pg_backend_pid()"))).one()
        return str(row[0]), int(row[1])


async def test_pgbouncer_setting_shares_one_server_connection_safely(bouncer, test_env):
    """Twenty clients, one server connection: every transaction sees its own context, no statement
    outlives its transaction on the server, and a new transaction starts with no context."""
    engine = make_engine(bouncer.url(test_env.owner_url), pool_size=20, max_overflow=0, pgbouncer=True)
    try:
        for _ in range(5):
            results = await asyncio.gather(*(_transaction(engine, i) for i in range(20)))
            assert [tid for tid, _ in results] == [f"tenant-{i}" for i in range(20)]
            assert len({pid for _, pid in results}) == 1  # all on PgBouncer's one server connection
        async with engine.begin() as conn:
            assert (await conn.execute(text("select count(*) from pg_prepared_statements"))).scalar_one() == 0
            assert (await conn.execute(text("select current_setting('app.tenant_id', true)"))).scalar() in ("", None)
    finally:
        await engine.dispose()
    assert "ERROR" not in bouncer.log()


@pytest.mark.parametrize("bouncer", [2], indirect=True)
async def test_without_the_setting_asyncpg_breaks_behind_transaction_pooling(bouncer, test_env):
    """Why the setting exists: a client's cached (named) statement was prepared on the server connection
    of an earlier transaction; the next transaction may get the other one, where it does not exist."""
    engine = make_engine(bouncer.url(test_env.owner_url), pool_size=10, max_overflow=0, pgbouncer=False)
    try:
        errors: list[BaseException] = []
        for _ in range(3):
            results = await asyncio.gather(*(_transaction(engine, i) for i in range(10)), return_exceptions=True)
            errors += [r for r in results if isinstance(r, BaseException)]
    finally:
        await engine.dispose()
    assert errors and all(isinstance(e, DBAPIError) and "prepared statement" in str(e) for e in errors), errors


def test_a_run_routed_through_pgbouncer_says_so(settings):
    """With ``KAQUAN_TEST_PGBOUNCER=1`` the run's app URL is PgBouncer's and the setting is on."""
    if os.environ.get("KAQUAN_TEST_PGBOUNCER") != "1":
        pytest.skip("KAQUAN_TEST_PGBOUNCER is not set")
    from sqlalchemy.engine import make_url

    assert settings.db_pgbouncer
    assert make_url(settings.db_url).port != make_url(settings.owner_db_url).port
