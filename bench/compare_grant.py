"""``bench/grant_http.py --baseline``: kaquan's grant against hand-written asyncpg grants, in one run.

Three servers, each under uvicorn with the same number of workers and the same pool size, each for a
tenant of its own in one throwaway database (app role ``kaquan_app``, RLS on):

* **kaquan**: ``core.app:create_app`` in service mode (Redis for rate limits and risk counters), the real
  ``POST /api/v1/grants`` with its audit sealer;
* **hand-written**: ``bench/baseline_grant.py:hand_written_app``, the same 15 statements per grant;
* **minimal**: ``bench/baseline_grant.py:minimal_app``, the pick, the grant and the item (plus BEGIN/COMMIT).

Each is loaded by wrk (``bench/wrk/post_unique.lua``: one code to a new member, own Idempotency-Key, no
delivery) at each ``--concurrency`` for ``--seconds``, after a ``--warmup``; rounds take turns (order rotated)
and between two loads the next waits until kaquan's sealer has sealed its tenant's events (the time is
noted: it is part of kaquan's cost) and stock is topped up. Printed: grants/s of every server in every round,
the per-round ratios kaquan / hand-written and kaquan / minimal with their min and median, p50/p99, the
statements of one kaquan grant (logged, ``bench/statement_log.py``) and duplicates (none allowed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import tempfile
from typing import Any

import asyncpg
from _pg import ROOT, asyncpg_dsn, machine_line, throwaway_database
from compare import Settler, baseline_env, kaquan_env, rows_table, run_rounds
from fixtures import BenchTenant, duplicates, ensure_plan, fetch_token, onboard, rows_written, stock_codes
from http_overhead import bench_settings, quiet_app, redis_db_state, redis_flush
from rounds import Contender, Round, summary
from seal_state import detect
from statement_log import kinds_line, statements_of_grant
from wrk_load import WrkResult, run_wrk

from core.crypto.envelope import generate_master_key_spec

HAND_WRITTEN = (
    "BEGIN, SELECT set_config, INSERT INTO idempotency_keys (claim), SELECT … FROM products, "
    "SELECT … FROM members, INSERT INTO members, SELECT … FROM risk_blocklist, UPDATE codes (SKIP LOCKED pick), "
    "INSERT INTO audit_events (3 rows), INSERT INTO events, INSERT INTO grants, INSERT INTO grant_items, "
    "INSERT INTO outbox (fan-out, WHERE EXISTS), UPDATE idempotency_keys (answer), COMMIT"
)
MINIMAL = "BEGIN, UPDATE codes (SKIP LOCKED pick), INSERT INTO grants, INSERT INTO grant_items, COMMIT"
KEYS = ("kaquan", "hand-written", "minimal")


def grant_load(tenants: dict[str, BenchTenant]) -> Any:
    """The load of one contender: wrk posting grants of its tenant's product with its token."""

    async def load(c: Contender, base: str, conns: int, seconds: int, measured: bool) -> WrkResult:
        t = tenants[c.key]
        return await run_wrk(
            base, "/api/v1/grants", t.token, body_template(t.product_id), connections=conns, seconds=seconds
        )

    return load


def body_template(product_id: object) -> str:
    return (
        f'{{"product_id": "{product_id}", "quantity": 1, "external_id": "m-{{key}}", '
        '"channel": "none", "campaign_ref": "bench"}'
    )


async def _tenants(app: Any, owner_dsn: str, per_run: int) -> dict[str, BenchTenant]:
    await ensure_plan(app)
    tenants = {}
    for key in KEYS:
        t = await onboard(app, key.replace("-", ""), ["grants:write"])
        if key == "kaquan":
            await fetch_token(app, t)
        else:
            t.token = secrets.token_urlsafe(24)
        await stock_codes(owner_dsn, t, per_run)
        tenants[key] = t
    return tenants


async def run(args: argparse.Namespace) -> None:
    """Set up, run the interleaved rounds and print the tables."""
    if await redis_db_state(args.redis_url) != "empty":
        raise SystemExit(f"{args.redis_url} is not an empty, reachable Redis database")
    concurrencies = [int(c) for c in args.concurrencies.split(",") if c.strip()]
    per_run = args.stock_rate * (args.seconds + args.warmup)
    print(f"# Grants: kaquan against hand-written SQL — {dt.date.today().isoformat()}")
    print()
    print(f"Machine: {machine_line()}")
    try:
        async with throwaway_database(args.admin_url, prefix="kaquan_bench_gbase") as db:
            with tempfile.TemporaryDirectory(prefix="kaquan-bench-") as data_dir:
                settings = bench_settings(db, data_dir, generate_master_key_spec("mk-bench"), args.redis_url)
                owner_dsn = asyncpg_dsn(db.owner_url)
                tenants = await _tenants(quiet_app(settings), owner_dsn, per_run)
                log = await statements_of_grant(
                    quiet_app(settings), tenants["kaquan"].token, tenants["kaquan"].product_id
                )
                await _report_setup(owner_dsn, args, log)
                contenders = [
                    Contender("kaquan", "core.app:create_app", kaquan_env(settings, args), str(ROOT)),
                    Contender(
                        "hand-written",
                        "baseline_grant:hand_written_app",
                        baseline_env(db.app_url, tenants["hand-written"], args),
                        str(ROOT / "bench"),
                    ),
                    Contender(
                        "minimal",
                        "baseline_grant:minimal_app",
                        baseline_env(db.app_url, tenants["minimal"], args),
                        str(ROOT / "bench"),
                    ),
                ]

                pairs = [("kaquan", "hand-written"), ("kaquan", "minimal")]
                settler = Settler(owner_dsn, tenants, per_run, args.seal_timeout, {"kaquan"})
                rounds = await run_rounds(
                    contenders, grant_load(tenants), settler, keys=list(KEYS), db_name=db.name, table="grants",
                    unit="grants/s", pairs=pairs, concurrencies=concurrencies, args=args,
                )
                dups = {k: await duplicates(owner_dsn, t) for k, t in tenants.items()}
                rows = {k: await rows_written(owner_dsn, t) for k, t in tenants.items()}
    finally:
        await redis_flush(args.redis_url)
    _report(rounds, pairs, dups)
    print()
    print(rows_table(rows, "grants"))


async def _report_setup(owner_dsn: str, args: argparse.Namespace, log: Any) -> None:
    conn = await asyncpg.connect(owner_dsn)
    try:
        version = await conn.fetchval("show server_version")
        schema = await detect(conn)
    finally:
        await conn.close()
    print(
        f"PostgreSQL {version} and Redis on 127.0.0.1; uvicorn with {args.workers} workers per server, pool "
        f"{args.pool_size} + {args.max_overflow} overflow per worker; wrk, {args.seconds} s per load after "
        f"{args.warmup} s warm-up, {args.rounds} rounds per concurrency, order rotated; audit: {schema.description}."
    )
    print()
    print(
        f"- kaquan, one grant (logged): {kinds_line(log)}; after the answer: {len(log.after)} more (sealer)."
    )
    print(f"- hand-written: 15 statements: {HAND_WRITTEN}.")
    print(f"- minimal: {MINIMAL}.")


def _report(rounds: list[Round], pairs: list[tuple[str, str]], dups: dict[str, tuple[int, int]]) -> None:
    print()
    print("\n".join(summary(rounds, list(KEYS), pairs)))
    print()
    print(
        "Duplicates (codes handed out twice): "
        + ", ".join(f"{k} {d} of {n:,} items" for k, (n, d) in dups.items())
    )
