"""Grants over HTTP on PostgreSQL + Redis: 200 concurrent clients calling ``POST /api/v1/grants``.

Run: ``.venv/bin/python bench/grant_http.py [--seconds 20] [--concurrency 200] [--workers 2] [--loadgen wrk]``

``--baseline``: kaquan against hand-written asyncpg grants (the same 15 statements, and the minimal pick,
grant, item) in interleaved rounds at 32 and 200 clients; see ``bench/compare_grant.py``.

The load comes from ``wrk`` (Debian package ``wrk``; ``bench/wrk/post_unique.lua``) when it is installed,
else from httpx in this process (``--loadgen httpx --grants 6000``), which costs the server CPU.

A throwaway PostgreSQL database is migrated like production (app role ``kaquan_app``, RLS on); the app
runs in service mode (rate limits and risk counters on Redis, database 13 on 127.0.0.1, which must be
empty) under uvicorn on 127.0.0.1. A tenant on a plan with a huge rate limit, an API client with
``grants:write`` and one product with ``--grants`` codes in stock are set up through the service layer.
Each request grants one code to a new member (``external_id``) with its own ``Idempotency-Key`` and no
delivery (``channel: "none"``). Printed: grants per second, p50/p95/p99 latency, non-2xx answers, and
duplicates (codes handed out twice, counted in the database afterwards). Aim: ≥ 400 grants/s, p99 ≤ 150 ms,
zero duplicates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import tempfile
import time
import uuid

import asyncpg
import compare
import compare_grant
import httpx
from _pg import ADMIN_URL, ROOT, asyncpg_dsn, machine_line, throwaway_database
from http_overhead import (
    REDIS_URL,
    ROW_PATH,
    bench_settings,
    quiet_app,
    redis_db_state,
    redis_flush,
    running,
    settings_env,
    uvicorn_server,
)
from raw_http import RawPool
from sqlalchemy import insert
from wrk_load import have_wrk, run_wrk, run_wrk_get

from core.catalog.models import Product
from core.crypto.envelope import generate_master_key_spec
from core.db.context import set_tenant, tenant_context
from core.db.ids import new_id, readable_ref
from core.db.maintenance import refresh_statistics
from core.inventory.models import Batch, Code
from core.inventory.vault import seal
from tenants import onboarding
from tenants.clients import create_client
from tenants.schemas import PlanCreate, TenantCreate


async def set_up(app: object, codes: int) -> tuple[uuid.UUID, uuid.UUID, str]:
    """Plan, tenant, API client (grants:write) and a product with ``codes`` codes; returns ids and a token."""
    kernel = app.state.kernel  # type: ignore[attr-defined]
    async with kernel.db.transaction() as s:
        await onboarding.ensure_default_plans(s)
        await onboarding.create_plan(
            s,
            PlanCreate(
                code="bench",
                name="Bench",
                requests_per_minute=1_000_000,
                max_api_clients=10,
                max_stored_codes=10_000_000,
            ),
        )
        created = await onboarding.create_tenant(
            kernel,
            s,
            TenantCreate(
                name="Bench Co", slug="bench-grants", owner_email="owner@bench.example.com", plan="bench"
            ),
        )
    set_tenant(None)
    tenant_id = created.tenant.id
    now = dt.datetime.now(dt.UTC)
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as s:
            client, secret = await create_client(s, "bench", ["grants:write"])
            product = Product(sku="BENCH-GRANT", kind="code", code_format="number_pin", name_zh="基准券")
            s.add(product)
            await s.flush()
            batch = Batch(ref=readable_ref("B"), product_id=product.id, unit_cost=100, code_count=codes)
            s.add(batch)
            await s.flush()
            cipher = await kernel.keys.cipher(s)
            rows = []
            for i in range(codes):
                sealed = seal(cipher, f"GRANT{i:012d}", f"{i:06d}")
                rows.append(
                    {
                        "tenant_id": tenant_id,
                        "id": new_id(),
                        "product_id": product.id,
                        "batch_id": batch.id,
                        "digest": sealed.digest,
                        "secret": sealed.secret,
                        "last4": sealed.last4,
                        "has_pin": True,
                        "state": "available",
                        "expires_at": now + dt.timedelta(days=30 + i % 300),
                        "state_changed_at": now,
                    }
                )
            for start in range(0, len(rows), 5000):
                await s.execute(insert(Code), rows[start : start + 5000])
    await refresh_statistics(kernel.db, "codes")
    async with running(app) as c:  # type: ignore[arg-type]
        r = await c.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, secret)
        )
        r.raise_for_status()
        return tenant_id, product.id, r.json()["access_token"]


def grant_body(product_id: uuid.UUID, key: str) -> dict[str, object]:
    """One code to a new member (``m-<key>``), no delivery."""
    return {
        "product_id": str(product_id),
        "quantity": 1,
        "external_id": f"m-{key}",
        "channel": "none",
        "campaign_ref": "bench",
    }


async def load(
    base: str,
    token: str,
    product_id: uuid.UUID,
    grants: int,
    concurrency: int,
) -> tuple[float, list[float], dict[int, int]]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    remaining = grants
    run = uuid.uuid4().hex[:8]

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as c:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                n = remaining
                body = grant_body(product_id, f"{run}-{n}")
                headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": f"{run}-{n}"}
                t0 = time.perf_counter()
                r = await c.post("/api/v1/grants", json=body, headers=headers)
                latencies.append(time.perf_counter() - t0)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, statuses


async def steady(
    base: str, token: str, product_id: uuid.UUID, rate: float, seconds: float
) -> tuple[float, list[float], dict[int, int]]:
    """Open loop: grant *i* leaves at ``start + i / rate`` whatever the others are doing; its latency counts
    from that moment (a stall is not hidden by the generator waiting). Lean keep-alive client."""
    pool = RawPool(base, 400)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    run = uuid.uuid4().hex[:8]
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def one(n: int, due: float) -> None:
        body = grant_body(product_id, f"{run}-{n}")
        try:
            status, _ = await pool.post(
                "/api/v1/grants", headers | {"Idempotency-Key": f"{run}-{n}"}, json.dumps(body).encode()
            )
        except (OSError, ValueError, asyncio.IncompleteReadError):
            status = 0
        latencies.append(time.perf_counter() - due)
        statuses[status] = statuses.get(status, 0) + 1

    start = time.perf_counter() + 0.05
    tasks = []
    for n in range(int(rate * seconds)):
        due = start + n / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n, due)))
    await asyncio.gather(*tasks)
    await pool.close()
    return time.perf_counter() - start, latencies, statuses


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)] * 1000 if ordered else 0.0


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--grants", type=int, default=6000, help="grants to send (httpx load generator)")
    parser.add_argument(
        "--seconds", type=int, default=None, help="how long to load (wrk; default 20, with --baseline 8 per load)"
    )
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--loadgen", choices=["wrk", "httpx"], default="wrk" if have_wrk() else "httpx")
    parser.add_argument("--stock", type=int, default=40_000, help="codes stocked (wrk runs until time is up)")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="instead of closed-loop clients: an open-loop steady rate of grants per second for --seconds",
    )
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="also load a bare Litestar app reading one row per request (same workers, clients, wrk)",
    )
    parser.add_argument("--redis-url", default=REDIS_URL, help="an EMPTY Redis database")
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="kaquan against hand-written asyncpg grants in interleaved rounds (default 8 s each, 3 rounds)",
    )
    compare.add_arguments(parser)
    args = parser.parse_args()
    args.seconds = args.seconds or (8 if args.baseline else 20)
    if args.baseline:
        await compare_grant.run(args)
        return
    state = await redis_db_state(args.redis_url)
    if state != "empty":
        raise SystemExit(f"{args.redis_url} is {state}; the benchmark needs an empty Redis database")
    stock = args.stock if args.loadgen == "wrk" or args.rate else args.grants + 400
    try:
        async with throwaway_database(args.admin_url, prefix="kaquan_bench_grant") as db:
            with tempfile.TemporaryDirectory(prefix="kaquan-bench-") as data_dir:
                settings = bench_settings(db, data_dir, generate_master_key_spec("mk-bench"), args.redis_url)
                # warm-up grants come out of the same stock
                _tenant_id, product_id, token = await set_up(quiet_app(settings), stock)
                env = settings_env(settings) | {"WEB_CONCURRENCY": str(args.workers)}
                async with uvicorn_server("core.app:create_app", env, str(ROOT)) as base:
                    if args.rate:
                        await steady(base, token, product_id, args.rate, 3)  # warm-up
                        seconds, latencies, statuses = await steady(
                            base, token, product_id, args.rate, args.seconds
                        )
                        p50, p95, p99 = pct(latencies, 0.5), pct(latencies, 0.95), pct(latencies, 0.99)
                    elif args.loadgen == "wrk":
                        body = (
                            f'{{"product_id": "{product_id}", "quantity": 1, "external_id": "m-{{key}}", '
                            '"channel": "none", "campaign_ref": "bench"}'
                        )
                        await run_wrk(base, "/api/v1/grants", token, body, connections=50, seconds=3)
                        result = await run_wrk(
                            base,
                            "/api/v1/grants",
                            token,
                            body,
                            connections=args.concurrency,
                            seconds=args.seconds,
                        )
                        seconds, statuses = result.seconds, dict(result.statuses)
                        p50, p95, p99 = result.p50_ms, result.p95_ms, result.p99_ms
                        if result.socket_errors:
                            statuses[0] = result.socket_errors  # shown as "0: n" (timeouts, resets)
                    else:
                        await load(base, token, product_id, 400, min(args.concurrency, 50))  # warm-up
                        seconds, latencies, statuses = await load(
                            base, token, product_id, args.grants, args.concurrency
                        )
                        p50, p95, p99 = pct(latencies, 0.5), pct(latencies, 0.95), pct(latencies, 0.99)
                ceiling = None
                if args.ceiling and args.loadgen == "wrk":
                    bare_env = {
                        "BENCH_DATABASE_URL": db.app_url,
                        "BENCH_TENANT_ID": str(_tenant_id),
                        "WEB_CONCURRENCY": str(args.workers),
                    }
                    async with uvicorn_server(
                        "http_overhead:bare_app_from_env", bare_env, str(ROOT / "bench")
                    ) as bare:
                        await run_wrk_get(bare, ROW_PATH, connections=50, seconds=3)
                        ceiling = await run_wrk_get(
                            bare, ROW_PATH, connections=args.concurrency, seconds=args.seconds
                        )
                conn = await asyncpg.connect(asyncpg_dsn(db.owner_url))
                try:
                    dups = await conn.fetchval("SELECT count(*) - count(DISTINCT code_id) FROM grant_items")
                    items = await conn.fetchval("SELECT count(*) FROM grant_items")
                    version = await conn.fetchval("show server_version")
                finally:
                    await conn.close()
    finally:
        await redis_flush(args.redis_url)
    ok = statuses.get(201, 0) + statuses.get(200, 0)
    print(f"# Grants over HTTP — {dt.date.today().isoformat()}")
    print()
    print(
        f"Machine: {machine_line()}; PostgreSQL {version} and Redis on 127.0.0.1; uvicorn, {args.workers} "
        f"worker processes, service mode (Redis rate limits and risk counters), app role with RLS."
    )
    amount = f"{args.seconds} s of grants" if args.loadgen == "wrk" else f"{args.grants:,} grants"
    if args.rate:
        print(
            f"Open loop: {args.rate:.0f} grants/s for {args.seconds} s (after 3 s warm-up), each sent on schedule "
            "whatever the others do, latency from the scheduled moment; 1 code each to a new member, own "
            "Idempotency-Key, no delivery."
        )
    else:
        print(
            f"{amount} of 1 code each from {args.concurrency} concurrent clients ({args.loadgen} load generator, "
            "after a warm-up), each to a new member with its own Idempotency-Key, no delivery."
        )
    print()
    print("| grants/s | p50 ms | p95 ms | p99 ms | 2xx | other answers | grant items | duplicates |")
    print("|---:|---:|---:|---:|---:|---|---:|---:|")
    others = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()) if k not in (200, 201)) or "none"
    print(
        f"| {ok / seconds:,.0f} | {p50:.1f} | {p95:.1f} | "
        f"{p99:.1f} | {ok:,} | {others} | {items:,} | {dups} |"
    )
    if ceiling is not None:
        print()
        print(
            f"Ceiling, same machine, workers and clients: a bare Litestar app (no middleware) reading one row "
            f"in one transaction per request serves {ceiling:,.0f} requests/s; grants reach "
            f"{ok / seconds / ceiling:.0%} of that."
        )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
