"""Test fixtures: one database per run (PostgreSQL when KAQUAN_TEST_DATABASE_URL is set, else SQLite),
schema from ``alembic upgrade head`` (never create_all), the app connected as the non-owner role.

With ``KAQUAN_TEST_REQUIRE_SERVICES=1`` (CI) an unreachable PostgreSQL or Redis fails the run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from core.app import create_app
from core.db.migrations import upgrade_head
from core.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
TEST_MASTER_KEY = "mk-test:" + base64.urlsafe_b64encode(b"k" * 32).decode().rstrip("=")
APP_ROLE = "kaquan_app"
REQUIRE = os.environ.get("KAQUAN_TEST_REQUIRE_SERVICES") == "1"


#: Route the app's PostgreSQL connections through a throwaway PgBouncer in transaction pooling mode
#: (``tests/pgbouncer.py``), with ``KAQUAN_DB_PGBOUNCER`` on. Fails the run when pgbouncer is missing.
PGBOUNCER = os.environ.get("KAQUAN_TEST_PGBOUNCER") == "1"


def _through_pgbouncer(stack: contextlib.ExitStack, admin_url: str, app_url: str) -> str:
    from tests.pgbouncer import pgbouncer_binary, running_pgbouncer

    if pgbouncer_binary() is None:
        pytest.fail("KAQUAN_TEST_PGBOUNCER=1 but pgbouncer is not installed (apt-get install pgbouncer)", pytrace=False)
    try:
        bouncer = stack.enter_context(running_pgbouncer(admin_url))
    except RuntimeError as exc:
        pytest.fail(f"PgBouncer did not start: {exc}", pytrace=False)
    # kaquan commands the tests start as subprocesses (worker, CLI) inherit the setting with the URL
    stack.enter_context(pytest.MonkeyPatch.context()).setenv("KAQUAN_DB_PGBOUNCER", "true")
    return bouncer.url(app_url)


def _pg_admin_url() -> str | None:
    return os.environ.get("KAQUAN_TEST_DATABASE_URL") or None


def _redis_url() -> str | None:
    return os.environ.get("KAQUAN_TEST_REDIS_URL") or None


def run_migrations(owner_url: str, app_url: str) -> None:
    upgrade_head(owner_url, app_url)


async def _create_pg_database(admin_url: str) -> tuple[str, str, str]:
    name = f"kaquan_test_{os.getpid()}_{secrets.token_hex(3)}"
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        await engine.dispose()
    base = make_url(admin_url)
    owner = base.set(database=name)
    app = base.set(database=name, username=APP_ROLE, password=None)
    return name, owner.render_as_string(hide_password=False), app.render_as_string(hide_password=False)


async def _drop_pg_database(admin_url: str, name: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await engine.dispose()


async def _check_redis(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        await client.ping()
    finally:
        await client.aclose()


@dataclass
class TestEnv:
    settings: Settings
    owner_url: str
    backend: str  # "postgresql" | "sqlite"


@pytest.fixture(scope="session")
async def test_env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TestEnv]:
    data_dir = tmp_path_factory.mktemp("kaquan-data")
    admin = _pg_admin_url()
    redis_url = _redis_url()
    if REQUIRE and (not admin or not redis_url):
        pytest.fail("CI requires KAQUAN_TEST_DATABASE_URL and KAQUAN_TEST_REDIS_URL", pytrace=False)
    if PGBOUNCER and not admin:
        pytest.fail("KAQUAN_TEST_PGBOUNCER=1 needs KAQUAN_TEST_DATABASE_URL (PostgreSQL)", pytrace=False)
    if redis_url:
        try:
            await _check_redis(redis_url)
        except Exception as exc:
            pytest.fail(f"Redis at {redis_url} is unreachable: {exc}", pytrace=False)
    overrides: dict[str, Any] = dict(
        data_dir=str(data_dir),
        master_key=TEST_MASTER_KEY,
        log_json=False,
        log_level="WARNING",
        redis_url=redis_url or "",
        base_url="http://127.0.0.1:8000",
        # the job queues of concurrent test sessions sharing one Redis database never mix
        redis_namespace=f"kaquan-test-{os.getpid()}-{secrets.token_hex(3)}",
        # periodic work is driven explicitly by the tests that need it, never by a clock mid-suite
        in_process_scheduler=False,
    )
    if admin:
        try:
            name, owner_url, app_url = await _create_pg_database(admin)
        except Exception as exc:
            pytest.fail(f"PostgreSQL at {admin} is unreachable: {exc}", pytrace=False)
        await asyncio.to_thread(run_migrations, owner_url, app_url)
        with contextlib.ExitStack() as stack:
            if PGBOUNCER:  # the app's connections go through PgBouncer; migrations and the owner stay direct
                app_url = _through_pgbouncer(stack, admin, app_url)
                overrides["db_pgbouncer"] = True
            settings = load_settings(env={}, database_url=app_url, database_owner_url=owner_url, **overrides)
            try:
                yield TestEnv(settings, owner_url, "postgresql")
            finally:
                await _drop_pg_database(admin, name)
    else:
        settings = load_settings(env={}, **overrides)
        await asyncio.to_thread(run_migrations, settings.owner_db_url, settings.db_url)
        yield TestEnv(settings, settings.owner_db_url, "sqlite")


@pytest.fixture(scope="session")
def settings(test_env: TestEnv) -> Settings:
    return test_env.settings


@pytest.fixture(scope="session")
async def owner_engine(test_env: TestEnv) -> AsyncIterator[AsyncEngine]:
    """A connection as the schema owner, for tampering and catalog checks (bypasses the app role)."""
    engine = create_async_engine(test_env.owner_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture(scope="session")
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app, in the test's own event loop (so DB connections can be shared)."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def run_lifespan() -> None:  # entered and exited in one task, as anyio requires
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run_lifespan())
    await asyncio.wait_for(started.wait(), 30)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as c:
        yield c
    stop.set()
    await task


@pytest.fixture(scope="session")
def kernel(app: Litestar) -> Any:
    return app.state.kernel


def unique(prefix: str = "t") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


@dataclass
class OperatorAuth:
    email: str
    password: str
    headers: dict[str, str]


@pytest.fixture(scope="session")
async def operator(client: httpx.AsyncClient, kernel: Any) -> OperatorAuth:
    from tenants.onboarding import ensure_default_plans
    from tenants.operators import create_operator

    email, password = f"{unique('op')}@example.com", "operator-password-1"
    async with kernel.db.transaction() as db:
        await ensure_default_plans(db)
        await create_operator(db, email, password)
    r = await client.post("/api/platform/v1/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return OperatorAuth(email, password, {"Authorization": f"Bearer {r.json()['access_token']}"})


@dataclass
class TenantHandle:
    id: uuid.UUID
    slug: str
    owner_email: str
    owner_password: str
    invite_url: str


@dataclass
class ApiCredentials:
    client_id: str
    client_secret: str
    token: str
    client_pk: uuid.UUID

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def make_tenant(
    client: httpx.AsyncClient, operator: OperatorAuth, kernel: Any
) -> Callable[..., Awaitable[TenantHandle]]:
    """Onboard a tenant through the operator API and activate its owner (password set)."""

    async def factory(plan: str = "starter", **fields: Any) -> TenantHandle:
        slug = fields.pop("slug", unique("acme-"))
        body = {
            "name": f"Tenant {slug}",
            "slug": slug,
            "owner_email": f"owner@{slug}.example.com",
            "plan": plan,
            **fields,
        }
        r = await client.post("/api/platform/v1/tenants", json=body, headers=operator.headers)
        assert r.status_code == 201, r.text
        data = r.json()
        url = data["owner_invite_url"]
        token = url.rsplit("/", 1)[1]
        from tenants.users import accept_invite

        password = "owner-password-1"
        async with kernel.db.transaction() as db:
            await accept_invite(db, token, password)
        from core.db.context import set_tenant

        set_tenant(None)
        return TenantHandle(uuid.UUID(data["tenant"]["id"]), slug, body["owner_email"], password, url)

    return factory


@pytest.fixture
def make_api_client(client: httpx.AsyncClient, kernel: Any) -> Callable[..., Awaitable[ApiCredentials]]:
    """Create an API client for a tenant (service layer) and fetch a token via ``POST /oauth/token``."""

    async def factory(tenant: TenantHandle, scopes: list[str] | None = None) -> ApiCredentials:
        from core.db.context import tenant_context
        from tenants.clients import create_client
        from tenants.scopes import SCOPES

        with tenant_context(tenant.id):
            async with kernel.db.transaction() as db:
                row, secret = await create_client(db, unique("client-"), scopes or sorted(SCOPES))
        r = await client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(row.client_id, secret)
        )
        assert r.status_code == 200, r.text
        return ApiCredentials(row.client_id, secret, r.json()["access_token"], row.id)

    return factory
