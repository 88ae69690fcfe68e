"""``bench/redeem_http.py --baseline``: kaquan's redemption against a hand-written asyncpg redemption, in one run.

Two servers under uvicorn with the same number of workers and pool size, each for a tenant of its own in one
throwaway database (app role with RLS):

* **kaquan**: ``core.app:create_app`` in service mode (Redis for rate limits and risk counters), the real
  ``POST /api/v1/redemptions`` with its audit sealer;
* **hand-written**: ``bench/baseline_redeem.py:hand_written_app``, the same statements (logged from kaquan).

Before each load, the bench seals and stores (``issued``) as many number + PIN codes as the load could use at
``--stock-rate`` and writes them to a file; wrk (``bench/wrk/post_codes.lua``) redeems each once, with its PIN,
a store and a terminal, no Idempotency-Key. Rounds take turns as in ``compare_grant.py``; between two loads the
next waits for kaquan's sealer. Printed: redemptions/s per server per round, the per-round ratio with its min
and median, p50/p99, the statement lists, rows written per redemption and an exactly-once check.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import tempfile
from typing import Any

import asyncpg
from _pg import ROOT, asyncpg_dsn, machine_line, throwaway_database
from compare import Settler, baseline_env, kaquan_env, rows_table, run_rounds
from fixtures import BenchTenant, ensure_plan, fetch_token, onboard, rows_written, sealed_cards
from http_overhead import bench_settings, quiet_app, redis_db_state, redis_flush
from rounds import Contender, Round, summary
from seal_state import detect
from statement_log import kinds_line, statements_of_redemption
from wrk_load import WrkResult, run_wrk_codes

from core.crypto.envelope import generate_master_key_spec

PATH = "/api/v1/redemptions"
KEYS = ("kaquan", "hand-written")
HAND_WRITTEN = (
    "BEGIN, SELECT set_config, SELECT … FROM risk_blocklist, SELECT … FROM risk_lockouts, "
    "SELECT … FROM codes (kaquan's lookup: product, holder, window), UPDATE codes (issued → redeemed), "
    "INSERT INTO redemptions, INSERT INTO audit_events, INSERT INTO events, INSERT INTO outbox (fan-out, "
    "WHERE EXISTS), UPDATE channel_order_codes, COMMIT"
)


async def _tenants(app: Any) -> dict[str, BenchTenant]:
    await ensure_plan(app)
    tenants = {}
    for key in KEYS:
        t = await onboard(app, f"redeem{key.replace('-', '')}", ["redemptions:read", "redemptions:write"])
        if key == "kaquan":
            await fetch_token(app, t)
        else:
            t.token = secrets.token_urlsafe(24)
        tenants[key] = t
    return tenants


class Loader:
    """Seals the codes a load may use, writes them to a file and runs wrk on it."""

    def __init__(self, owner_dsn: str, tenants: dict[str, BenchTenant], rate: int, directory: str) -> None:
        self.owner_dsn, self.tenants, self.rate, self.directory = owner_dsn, tenants, rate, directory
        self.exhausted = 0

    async def __call__(self, c: Contender, base: str, conns: int, seconds: int, measured: bool) -> WrkResult:
        t = self.tenants[c.key]
        cards = await sealed_cards(self.owner_dsn, t, self.rate * seconds + conns)
        path = os.path.join(self.directory, f"cards-{c.key}-{secrets.token_hex(4)}.txt")
        with open(path, "w", encoding="ascii") as f:  # noqa: ASYNC230 - a local file, before the load starts
            f.write("".join(f"{number} {pin}\n" for number, pin in cards))
        try:
            result = await run_wrk_codes(base, PATH, t.token, path, connections=conns, seconds=seconds)
        finally:
            os.unlink(path)
        self.exhausted += result.exhausted
        return result


async def run(args: argparse.Namespace) -> None:
    """Set up, run the interleaved rounds and print the tables."""
    if await redis_db_state(args.redis_url) != "empty":
        raise SystemExit(f"{args.redis_url} is not an empty, reachable Redis database")
    concurrencies = [int(c) for c in args.concurrencies.split(",") if c.strip()]
    print(f"# Redemption: kaquan against hand-written SQL — {dt.date.today().isoformat()}")
    print()
    print(f"Machine: {machine_line()}")
    pairs = [("kaquan", "hand-written")]
    try:
        async with throwaway_database(args.admin_url, prefix="kaquan_bench_rbase") as db:
            with tempfile.TemporaryDirectory(prefix="kaquan-bench-") as data_dir:
                settings = bench_settings(db, data_dir, generate_master_key_spec("mk-bench"), args.redis_url)
                owner_dsn = asyncpg_dsn(db.owner_url)
                tenants = await _tenants(quiet_app(settings))
                cards = await sealed_cards(owner_dsn, tenants["kaquan"], 2)
                log = await statements_of_redemption(quiet_app(settings), tenants["kaquan"].token, cards)
                await _report_setup(owner_dsn, args, log)
                contenders = [
                    Contender("kaquan", "core.app:create_app", kaquan_env(settings, args), str(ROOT)),
                    Contender(
                        "hand-written",
                        "baseline_redeem:hand_written_app",
                        baseline_env(db.app_url, tenants["hand-written"], args),
                        str(ROOT / "bench"),
                    ),
                ]
                loader = Loader(owner_dsn, tenants, args.stock_rate, data_dir)
                settler = Settler(owner_dsn, tenants, 0, args.seal_timeout, {"kaquan"})
                rounds = await run_rounds(
                    contenders, loader, settler, keys=list(KEYS), db_name=db.name, table="redemptions",
                    unit="redemptions/s", pairs=pairs, concurrencies=concurrencies, args=args,
                )
                once = {k: await exactly_once(owner_dsn, t) for k, t in tenants.items()}
                tables = ("redemptions", "audit_events", "events", "outbox")
                rows = {k: await rows_written(owner_dsn, t, tables) for k, t in tenants.items()}
    finally:
        await redis_flush(args.redis_url)
    _report(rounds, pairs, once, loader.exhausted)
    print()
    print(rows_table(rows, "redemptions"))


async def exactly_once(owner_dsn: str, t: BenchTenant) -> tuple[int, int, int]:
    """(redemptions, codes redeemed, codes with more than one redemption) of the tenant."""
    conn = await asyncpg.connect(owner_dsn)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM redemptions WHERE tenant_id = $1) AS reds, "
            "(SELECT count(*) FROM codes WHERE tenant_id = $1 AND state = 'redeemed') AS done, "
            "(SELECT count(*) FROM (SELECT code_id FROM redemptions WHERE tenant_id = $1 GROUP BY code_id "
            " HAVING count(*) > 1) d) AS twice",
            t.tenant_id,
        )
        return int(row["reds"]), int(row["done"]), int(row["twice"])
    finally:
        await conn.close()


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
        f"{args.warmup} s warm-up, {args.rounds} rounds per concurrency, order rotated; a fresh number + PIN code "
        f"per request; audit: {schema.description}."
    )
    print()
    print(
        f"- kaquan, one redemption (logged): {kinds_line(log)}; after the answer: {len(log.after)} more (sealer)."
    )
    print(f"- hand-written: 12 statements: {HAND_WRITTEN}.")


def _report(
    rounds: list[Round], pairs: list[tuple[str, str]], once: dict[str, tuple[int, int, int]], exhausted: int
) -> None:
    print()
    print("\n".join(summary(rounds, list(KEYS), pairs)))
    print()
    print(
        "Exactly once: "
        + ", ".join(
            f"{k} {reds:,} redemptions, {done:,} codes redeemed, {twice} codes redeemed twice"
            for k, (reds, done, twice) in once.items()
        )
    )
    if exhausted:
        print(f"**{exhausted:,} requests were sent after a load ran out of codes** (raise --stock-rate).")
