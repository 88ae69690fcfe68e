"""What our request pipeline costs: the full app versus a bare Litestar app doing the same DB reads.

Run: ``.venv/bin/python bench/http_overhead.py [--requests 3000] [--concurrency 20] [--no-uvicorn]``

A throwaway PostgreSQL database is migrated like production and the app connects as the non-owner role
``kaquan_app`` (RLS applies). A tenant on a plan with a huge rate limit and one API client with
``tenant:read`` are onboarded through the service layer, and a bearer token is fetched from
``POST /oauth/token``. Then ``GET /api/v1/tenant`` is measured on:

* the full app (``core.app.create_app``): request log + request id, server-side session config, bearer
  auth (token lookup), tenant/RLS context, rate limits (in memory, and on Redis as in service mode),
  idempotency, CSRF config, problem+json handlers, the same handler and the commit before the response;
* a bare Litestar app, no middleware, whose handler does the same reads as ours (tenant + plan, the two
  quota counts) in one transaction as the same role with the same RLS ``set_config``;
* the bare app reading only the tenant row.

Both are served in-process through ``httpx.ASGITransport`` with ``--concurrency`` concurrent clients for
a fixed number of requests (interleaved rounds), and then, unless ``--no-uvicorn``, by real uvicorn
servers (one process each) on 127.0.0.1 ports. Figures are requests per second and the ratio to the
bare app serving the same reads. Logging stays on (JSON lines at INFO), discarded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import msgspec
import redis.asyncio as aioredis
from _pg import ADMIN_URL, ROOT, BenchDatabase, asyncpg_dsn, machine_line, throwaway_database
from litestar import Litestar, get
from sqlalchemy import select

from core.app import create_app
from core.crypto.envelope import generate_master_key_spec
from core.db.context import set_tenant, tenant_context
from core.db.session import Database
from core.settings import Settings, load_settings
from tenants import onboarding, registry
from tenants.api_tenant import QuotaOut, TenantProfile
from tenants.clients import create_client
from tenants.models import Tenant
from tenants.schemas import PlanCreate, TenantCreate

REDIS_URL = os.environ.get("KAQUAN_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
SERVER_PIDS: dict[str, int] = {}  # base URL of a running uvicorn_server → its pid (CPU accounting, bench/cpu.py)
PATH = "/api/v1/tenant"
ROW_PATH = "/bare/tenant-row"


# --------------------------------------------------------------------------- the bare baseline app


def create_bare_app(database_url: str, tenant_id: uuid.UUID) -> Litestar:
    """A Litestar app without middleware: the same reads as ``GET /api/v1/tenant``, and a one-row read."""
    db = Database(database_url)

    @get(PATH)
    async def profile() -> TenantProfile:
        with tenant_context(tenant_id):
            async with db.transaction() as s:
                tenant, plan = await registry.get_tenant(s, tenant_id)
                used = await registry.quota_usage(s, tenant_id)
        quotas = [
            QuotaOut("users", plan.max_users, used["users"]),
            QuotaOut("api_clients", plan.max_api_clients, used["api_clients"]),
            QuotaOut("requests_per_minute", plan.requests_per_minute, 0),
        ]
        return TenantProfile(onboarding.tenant_out(tenant, plan.code), quotas)

    @get(ROW_PATH)
    async def tenant_row() -> dict[str, Any]:
        with tenant_context(tenant_id):
            async with db.transaction() as s:
                t = (await s.execute(select(Tenant).where(Tenant.id == tenant_id))).scalar_one()
        return {"id": str(t.id), "slug": t.slug, "name": t.name, "status": t.status}

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar([profile, tenant_row, health], on_shutdown=[db.dispose], logging_config=None)


def bare_app_from_env() -> Litestar:
    """uvicorn ``--factory`` entry point for the bare app (URL and tenant from the environment)."""
    return create_bare_app(os.environ["BENCH_DATABASE_URL"], uuid.UUID(os.environ["BENCH_TENANT_ID"]))


# --------------------------------------------------------------------------- set-up


@dataclass
class Fixture:
    """What the runs share: settings of the full app, the tenant and a bearer token."""

    settings: Settings
    tenant_id: uuid.UUID
    token: str


def bench_settings(db: BenchDatabase, data_dir: str, master_key: str, redis_url: str) -> Settings:
    return load_settings(
        env={},
        database_url=db.app_url,
        database_owner_url=db.owner_url,
        master_key=master_key,
        data_dir=data_dir,
        redis_url=redis_url,
        log_level="INFO",
        log_json=True,
        default_rate_limit_per_minute=1_000_000_000,
        in_process_worker=False,
    )


def quiet_app(settings: Settings) -> Litestar:
    """``create_app`` with its log output (JSON lines, kept on: they are part of the cost) in /dev/null."""
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    with contextlib.redirect_stderr(devnull):
        return create_app(settings)


@contextlib.asynccontextmanager
async def running(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan plus an in-process HTTP client on it."""
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench.local") as c:
            yield c


async def onboard(app: Litestar) -> tuple[uuid.UUID, str]:
    """Plan with a huge rate limit, a tenant and an API client (service layer); a token via the API."""
    kernel = app.state.kernel
    async with kernel.db.transaction() as s:
        await onboarding.ensure_default_plans(s)
        await onboarding.create_plan(
            s, PlanCreate(code="bench", name="Bench", requests_per_minute=1_000_000, max_api_clients=10)
        )
        created = await onboarding.create_tenant(
            kernel,
            s,
            TenantCreate(
                name="Bench Co", slug="bench-co", owner_email="owner@bench.example.com", plan="bench"
            ),
        )
    set_tenant(None)
    tenant_id = created.tenant.id
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as s:
            row, secret = await create_client(s, "bench", ["tenant:read"])
    async with running(app) as c:
        r = await c.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(row.client_id, secret)
        )
        r.raise_for_status()
        return tenant_id, r.json()["access_token"]


async def redis_db_state(url: str) -> str:
    """``"empty"``, ``"busy"`` (keys present: not ours to use) or ``"down"``."""
    client = aioredis.from_url(url)
    try:
        size = await asyncio.wait_for(client.dbsize(), 2)
        return "empty" if size == 0 else "busy"
    except Exception:
        return "down"
    finally:
        await client.aclose()


async def redis_flush(url: str) -> None:
    """Empty the bench's own Redis database (rate-limit windows, relayed job messages)."""
    client = aioredis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


# --------------------------------------------------------------------------- load


@dataclass
class Result:
    """Totals of one variant over all its rounds."""

    label: str
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        lat = sorted(self.latencies)
        return lat[min(int(len(lat) * q), len(lat) - 1)] * 1000 if lat else 0.0


async def load(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], requests: int, concurrency: int
) -> tuple[float, list[float]]:
    """``requests`` GETs from ``concurrency`` concurrent clients; every answer must be 200."""
    remaining = requests
    latencies: list[float] = []

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            r = await client.get(path, headers=headers)
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise SystemExit(f"{path} answered {r.status_code}: {r.text[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


Target = tuple[str, httpx.AsyncClient, str, dict[str, str]]  # label, client, path, headers


async def measure(targets: list[Target], requests: int, concurrency: int, rounds: int) -> list[Result]:
    """Warm up every target, then run them in interleaved rounds (order reversed every other round)."""
    results = {label: Result(label) for label, *_ in targets}
    for _label, client, path, headers in targets:
        await load(client, path, headers, min(200, requests), concurrency)
    per_round = max(requests // rounds, 1)
    for r in range(rounds):
        for label, client, path, headers in targets if r % 2 == 0 else list(reversed(targets)):
            seconds, lat = await load(client, path, headers, per_round, concurrency)
            res = results[label]
            res.requests += per_round
            res.seconds += seconds
            res.latencies.extend(lat)
    return [results[label] for label, *_ in targets]


def table(title: str, results: list[Result], baseline: str, row_baseline: str) -> list[str]:
    base = next(r for r in results if r.label == baseline).rate
    row = next(r for r in results if r.label == row_baseline).rate
    out = [
        f"**{title}**",
        "",
        "| variant | req/s | p50 ms | p99 ms | vs bare, same reads | vs bare, tenant row only |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        out.append(
            f"| {r.label} | {r.rate:,.0f} | {r.pct(0.5):.2f} | {r.pct(0.99):.2f} | "
            f"{r.rate / base * 100:.0f}% | {r.rate / row * 100:.0f}% |"
        )
    return out


# --------------------------------------------------------------------------- uvicorn servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def uvicorn_server(factory: str, env: dict[str, str], app_dir: str) -> AsyncIterator[str]:
    """One uvicorn process on a free 127.0.0.1 port; yields its base URL; stopped by its own pid."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--app-dir",
        app_dir,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    keep = os.environ.get("KAQUAN_BENCH_SERVER_LOG")  # a path: keep the server's log for a post-mortem
    # stderr (JSON log lines), read back on failure; opening a local file once before the server starts is fine
    with open(keep, "w+b") if keep else tempfile.TemporaryFile() as log:  # noqa: ASYNC230
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=str(ROOT), env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=log
        )
        base = f"http://127.0.0.1:{port}"
        SERVER_PIDS[base] = proc.pid
        try:
            async with httpx.AsyncClient(base_url=base) as c:
                for _ in range(150):
                    if proc.returncode is not None:
                        log.seek(0)
                        tail = log.read().decode(errors="replace")[-2000:]
                        raise SystemExit(f"uvicorn {factory} exited: {tail}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await c.get("/health")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
                else:
                    raise SystemExit(f"uvicorn {factory} did not become healthy")
            yield base
        finally:
            SERVER_PIDS.pop(base, None)
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


def settings_env(settings: Settings) -> dict[str, str]:
    """``KAQUAN_*`` variables reproducing ``settings`` for a server process."""
    env = {}
    for f in msgspec.structs.fields(Settings):
        value = getattr(settings, f.name)
        env[f"KAQUAN_{f.name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


# --------------------------------------------------------------------------- main


async def in_process(
    fx: Fixture, db: BenchDatabase, redis: str | None, args: argparse.Namespace
) -> list[Result]:
    """Full app (memory and Redis rate limits) vs the bare app, all through ``httpx.ASGITransport``."""
    auth = {"Authorization": f"Bearer {fx.token}"}
    async with contextlib.AsyncExitStack() as stack:
        full = await stack.enter_async_context(running(quiet_app(fx.settings)))
        targets: list[Target] = [("full app, rate limits in memory", full, PATH, auth)]
        if redis:
            redis_settings = msgspec.structs.replace(fx.settings, redis_url=redis)
            full_redis = await stack.enter_async_context(running(quiet_app(redis_settings)))
            targets.append(("full app, rate limits on Redis", full_redis, PATH, auth))
        bare = await stack.enter_async_context(running(create_bare_app(db.app_url, fx.tenant_id)))
        targets += [
            ("bare Litestar, same reads", bare, PATH, {}),
            ("bare Litestar, tenant row only", bare, ROW_PATH, {}),
        ]
        return await measure(targets, args.requests, args.concurrency, args.rounds)


async def over_uvicorn(
    fx: Fixture, db: BenchDatabase, redis: str | None, args: argparse.Namespace
) -> list[Result]:
    """The same comparison against one uvicorn process per app on 127.0.0.1."""
    auth = {"Authorization": f"Bearer {fx.token}"}
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    full_env = settings_env(fx.settings) | {"KAQUAN_REDIS_URL": redis or ""}
    bare_env = {"BENCH_DATABASE_URL": db.app_url, "BENCH_TENANT_ID": str(fx.tenant_id)}
    label = "full app, rate limits on Redis" if redis else "full app, rate limits in memory"
    async with (
        uvicorn_server("core.app:create_app", full_env, str(ROOT)) as full_url,
        uvicorn_server("http_overhead:bare_app_from_env", bare_env, str(ROOT / "bench")) as bare_url,
        httpx.AsyncClient(base_url=full_url, limits=limits) as full,
        httpx.AsyncClient(base_url=bare_url, limits=limits) as bare,
    ):
        targets: list[Target] = [
            (label, full, PATH, auth),
            ("bare Litestar, same reads", bare, PATH, {}),
            ("bare Litestar, tenant row only", bare, ROW_PATH, {}),
        ]
        return await measure(targets, args.requests, args.concurrency, args.rounds)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per variant (all rounds)")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-uvicorn", action="store_true", help="skip the real-server variant")
    parser.add_argument(
        "--redis-url",
        default=REDIS_URL,
        help="an EMPTY Redis database for the service-mode variant ('' to skip)",
    )
    parser.add_argument("--admin-url", default=ADMIN_URL)
    args = parser.parse_args()
    redis: str | None = None
    if args.redis_url:
        state = await redis_db_state(args.redis_url)
        if state == "empty":
            redis = args.redis_url
        else:
            print(f"(Redis variant skipped: {args.redis_url} is {state}; the bench needs an empty database)")
    try:
        await run_all(args, redis)
    finally:
        if redis:
            await redis_flush(redis)


async def run_all(args: argparse.Namespace, redis: str | None) -> None:
    """Set up the database and tenant, then run the in-process and uvicorn comparisons."""
    async with throwaway_database(args.admin_url, prefix="kaquan_bench_http") as db:
        with tempfile.TemporaryDirectory(prefix="kaquan-bench-") as data_dir:
            settings = bench_settings(db, data_dir, generate_master_key_spec("mk-bench"), "")
            tenant_id, token = await onboard(quiet_app(settings))
            fx = Fixture(settings, tenant_id, token)
            conn = await asyncpg.connect(asyncpg_dsn(db.owner_url))
            try:
                version = await conn.fetchval("show server_version")
            finally:
                await conn.close()
            print(f"# HTTP pipeline overhead — {dt.date.today().isoformat()}")
            print()
            print(f"Machine: {machine_line()}; PostgreSQL {version} and Redis on 127.0.0.1")
            print(
                f"`GET {PATH}` as an API client with `tenant:read`; {args.requests:,} requests per variant in "
                f"{args.rounds} interleaved rounds, {args.concurrency} concurrent clients; app role "
                "`kaquan_app` (RLS on); JSON access log at INFO, discarded."
            )
            print()
            runs: list[tuple[str, Callable[[], Awaitable[list[Result]]]]] = [
                (
                    "In-process (httpx.ASGITransport, client and app share one event loop)",
                    lambda: in_process(fx, db, redis, args),
                )
            ]
            if not args.no_uvicorn:
                runs.append(
                    (
                        "uvicorn, one process per app on 127.0.0.1 (load from the bench process)",
                        lambda: over_uvicorn(fx, db, redis, args),
                    )
                )
            for title, run in runs:
                results = await run()
                for line in table(
                    title, results, "bare Litestar, same reads", "bare Litestar, tenant row only"
                ):
                    print(line)
                print()


if __name__ == "__main__":
    asyncio.run(main())
