"""Does audit sealing keep up? A burst of grants at full throughput, then how long until every event is sealed.

Run: ``.venv/bin/python bench/audit_seal.py [--seconds 30] [--concurrency 32] [--workers 2] [--poll 0.5]``

A throwaway database migrated like production (app role with RLS), kaquan under uvicorn in service mode
(Redis database 9 by default, which must be empty), one tenant with an API client and enough stock. After a
warm-up and once the warm-up's events are sealed, wrk sends grants for ``--seconds`` from ``--concurrency``
closed-loop clients (one code to a new member each, own Idempotency-Key): three audit events per grant. While
it runs the backlog of unsealed events is sampled every second; when it stops, the backlog is polled every
``--poll`` seconds until it is zero (the requests wrk left in flight are still being served then, so the
backlog may grow for a moment before it falls). Aims (issue 13): every event sealed within 2 s of the burst's end, and
dead tuples in ``audit_events`` at most 10 % of its live rows after the burst.

Both sealing schemas are understood (``bench/seal_state.py``): row sealing (``seq IS NULL`` = unsealed, each
sealed event an UPDATE) and block sealing (``audit_seals`` rows covering position ranges, events never
updated). Dead tuples are ``n_dead_tup`` against ``n_live_tup`` of ``pg_stat_user_tables`` (read 11 s after the
writes: PostgreSQL 15 backends report within 10 s of going idle), with the table's inserts, updates and
autovacuum runs during the run; ``pgstattuple`` (contrib, created in the throwaway database) adds how many
dead tuples are still physically stored (page pruning reclaims some before any vacuum).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import tempfile
import time
from typing import Any

import asyncpg
from _pg import ADMIN_URL, ROOT, asyncpg_dsn, machine_line, throwaway_database
from compare import kaquan_env
from cpu import wait_idle
from fixtures import BenchTenant, ensure_plan, fetch_token, onboard, stock_codes
from http_overhead import SERVER_PIDS, bench_settings, quiet_app, redis_db_state, redis_flush, uvicorn_server
from seal_state import SealSchema, TableStats, detect, table_stats, unsealed
from wrk_load import WrkResult, run_wrk

from core.crypto.envelope import generate_master_key_spec

REDIS_URL = "redis://127.0.0.1:6379/9"
STATS_WAIT = 11.0  # PostgreSQL 15 backends report table counts within 10 s of going idle


def body_template(product_id: object) -> str:
    return (
        f'{{"product_id": "{product_id}", "quantity": 1, "external_id": "m-{{key}}", '
        '"channel": "none", "campaign_ref": "seal"}'
    )


async def wait_sealed(conn: Any, schema: SealSchema, limit: float) -> float:
    """Seconds until nothing is unsealed (at most ``limit``)."""
    started = time.perf_counter()
    while True:
        if not await unsealed(conn, schema) or time.perf_counter() - started > limit:
            return time.perf_counter() - started
        await asyncio.sleep(0.25)


async def sample_during(conn: Any, schema: SealSchema, stop: asyncio.Event) -> list[tuple[float, int]]:
    """The unsealed backlog once a second while the burst runs."""
    started, out = time.perf_counter(), []
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        out.append((time.perf_counter() - started, await unsealed(conn, schema)))
    return out


async def drain(conn: Any, schema: SealSchema, poll: float, limit: float) -> list[tuple[float, int]]:
    """The backlog every ``poll`` seconds from the end of the burst until it is zero (or ``limit`` seconds)."""
    started, out = time.perf_counter(), []
    while True:
        t = time.perf_counter() - started
        left = await unsealed(conn, schema)
        out.append((t, left))
        if not left or t > limit:
            return out
        await asyncio.sleep(max(poll - (time.perf_counter() - started - t), 0))


async def exact_dead(conn: Any) -> tuple[int, int] | None:
    """(live, dead) tuples of ``audit_events`` counted by ``pgstattuple``; None without the extension."""
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        row = await conn.fetchrow("SELECT tuple_count, dead_tuple_count FROM pgstattuple('audit_events')")
    except asyncpg.PostgresError:
        return None
    return int(row["tuple_count"]), int(row["dead_tuple_count"])


async def burst(
    base: str, t: BenchTenant, conn: Any, schema: SealSchema, args: argparse.Namespace
) -> tuple[WrkResult, list[tuple[float, int]], list[tuple[float, int]]]:
    """The burst with the backlog sampled, then the drain."""
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_during(conn, schema, stop))
    try:
        result = await run_wrk(
            base,
            "/api/v1/grants",
            t.token,
            body_template(t.product_id),
            connections=args.concurrency,
            seconds=args.seconds,
        )
    finally:
        stop.set()
        during = await sampler
    after = await drain(conn, schema, args.poll, args.timeout)
    return result, during, after


async def run(args: argparse.Namespace) -> None:
    if await redis_db_state(args.redis_url) != "empty":
        raise SystemExit(f"{args.redis_url} is not an empty, reachable Redis database")
    print(f"# Audit sealing under a burst of grants — {dt.date.today().isoformat()}")
    print()
    print(f"Machine: {machine_line()}")
    try:
        async with throwaway_database(args.admin_url, prefix="kaquan_bench_seal") as db:
            with tempfile.TemporaryDirectory(prefix="kaquan-bench-") as data_dir:
                settings = bench_settings(db, data_dir, generate_master_key_spec("mk-bench"), args.redis_url)
                owner_dsn = asyncpg_dsn(db.owner_url)
                app = quiet_app(settings)
                await ensure_plan(app)
                t = await onboard(app, "seal", ["grants:write"])
                await fetch_token(app, t)
                await stock_codes(owner_dsn, t, args.stock_rate * (args.seconds + args.warmup))
                conn = await asyncpg.connect(owner_dsn)
                try:
                    schema = await detect(conn)
                    version = await conn.fetchval("show server_version")
                    print(
                        f"PostgreSQL {version} and Redis on 127.0.0.1; kaquan under uvicorn, {args.workers} workers, "
                        f"service mode; wrk, {args.concurrency} clients; audit: {schema.description}."
                    )
                    async with uvicorn_server(
                        "core.app:create_app", kaquan_env(settings, args), str(ROOT)
                    ) as base:
                        await run_wrk(
                            base,
                            "/api/v1/grants",
                            t.token,
                            body_template(t.product_id),
                            connections=args.concurrency,
                            seconds=args.warmup,
                        )
                        await wait_idle(SERVER_PIDS[base])  # what the warm-up left in flight
                        await wait_sealed(conn, schema, args.timeout)
                        await asyncio.sleep(STATS_WAIT)
                        before = await table_stats(conn)
                        result, during, after = await burst(base, t, conn, schema, args)
                        await asyncio.sleep(STATS_WAIT)
                        stats = (await table_stats(conn)).minus(before)
                        exact = await exact_dead(conn)
                finally:
                    await conn.close()
    finally:
        await redis_flush(args.redis_url)
    report(args, result, during, after, stats, exact)


def report(
    args: argparse.Namespace,
    result: WrkResult,
    during: list[tuple[float, int]],
    after: list[tuple[float, int]],
    stats: TableStats,
    exact: tuple[int, int] | None,
) -> None:
    events = stats.inserted
    others = {k: v for k, v in result.statuses.items() if not 200 <= k < 300}
    print()
    print(
        f"Burst: {args.seconds} s, {result.ok:,} grants ({result.ok_per_second:,.0f}/s, p50 {result.p50_ms:,.0f} ms, "
        f"p99 {result.p99_ms:,.0f} ms{', other answers ' + str(others) if others else ''}); "
        f"{events:,} audit events written ({events / args.seconds:,.0f}/s)."
    )
    peak = max(during, key=lambda x: x[1]) if during else (0.0, 0)
    print(
        f"Unsealed while the burst ran (every second): {', '.join(str(n) for _, n in during)} "
        f"(peak {peak[1]:,} at {peak[0]:.0f} s)."
    )
    zero = after[-1][0] if after and after[-1][1] == 0 else None
    print()
    print("| seconds after the burst | " + " | ".join(f"{t:.1f}" for t, _ in after) + " |")
    print("|---|" + "---:|" * len(after))
    print("| unsealed events | " + " | ".join(f"{n:,}" for _, n in after) + " |")
    print()
    verdict = "met" if zero is not None and zero <= 2.0 else "missed"
    when = f"{zero:.1f} s" if zero is not None else f"not within {args.timeout:.0f} s"
    print(f"**All sealed {when} after the burst** (aim ≤ 2 s: {verdict}).")
    share = stats.dead / stats.live if stats.live else 0.0
    print(
        f"**audit_events: {stats.dead:,} dead tuples for {stats.live:,} live rows = {share:.0%}** "
        f"(pg_stat_user_tables n_dead_tup / n_live_tup; aim ≤ 10 %: {'met' if share <= 0.10 else 'missed'})."
    )
    physical = (
        f"pgstattuple now: {exact[1]:,} dead tuples stored for {exact[0]:,} live (page pruning reclaims dead "
        "tuples before any vacuum)"
        if exact
        else "pgstattuple not available"
    )
    print(
        f"During the run: {stats.inserted:,} inserted, {stats.updated:,} updated "
        f"({stats.updated / events if events else 0:.2f} per event, {stats.hot_updated:,} HOT), {stats.deleted:,} "
        f"deleted, {stats.autovacuums} autovacuum runs; {physical}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=30, help="length of the burst")
    parser.add_argument("--concurrency", type=int, default=32, help="wrk connections (closed loop)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--max-overflow", type=int, default=20)
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between two counts after the burst")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up waiting for sealing after this")
    parser.add_argument("--stock-rate", type=int, default=1500, help="grants/s the stock is sized for")
    parser.add_argument("--redis-url", default=REDIS_URL, help="an EMPTY Redis database")
    parser.add_argument("--admin-url", default=ADMIN_URL)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
