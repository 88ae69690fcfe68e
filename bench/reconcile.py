"""Reconciliation of 1,000,000 statement lines against our order lines on PostgreSQL.

Generates, with ``INSERT … SELECT generate_series`` in a throwaway database: one channel account with N orders
of one line each, two ``sale`` split rows per line (channel 10%, tenant the rest), and one statement of N
lines for March 2026 — mostly exact matches, with 1% of lines naming an order we do not have (so that order
is missing on their side too), 1% off by a fen, 1% with another commission, every tenth line without an order
line id (the order's only line is taken), and 0.1% reporting the previous order's line again (a duplicate;
that order is then missing on their side).

Then alternates, for ``--rounds`` rounds: the real service (:func:`core.settlement.reconcile.reconcile`, as
the app role under row-level security, committed) and a bare SQL join of the same statement lines to the
same order lines materialised into a temporary table (owner, no RLS). Each run's items are deleted (as the
owner) before the next round so that every round sees the same data. Prints a markdown table with the time
of each, the ratio, the peak RSS of this process, PostgreSQL's ``work_mem`` and the temporary bytes PostgreSQL
wrote during the run.

    .venv/bin/python bench/reconcile.py [--lines 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from sqlalchemy import text

from bench._pg import asyncpg_dsn, machine_line, throwaway_database
from core.connectors.models import ConnectorAccount
from core.db.context import tenant_context
from core.kernel import Kernel
from core.settings import load_settings
from core.settlement.reconcile import WORK_MEM, reconcile
from tenants.onboarding import create_tenant, ensure_default_plans
from tenants.schemas import TenantCreate

PERIOD = "2026-03"
RULE = '{"components": [{"party": "channel", "basis": "sale", "bp": 1000}], "remainder_to": "tenant"}'

_ORDERS = """
INSERT INTO channel_orders (tenant_id, id, created_at, account_id, channel_order_id, status, source, placed_at,
    total_fen, buyer_id, buyer_phone_masked, buyer_ip, referrer, kol, attempts, last_error, refusal)
SELECT $1, md5('o' || i)::uuid, now(), $2, 'O' || i, 'fulfilled', 'callback',
    timestamptz '2026-03-01 00:00+08' + (i % 2000000) * interval '1 second', 1000 + i % 9000, '', '', '', '', '', 0,
    '', ''
FROM generate_series(1, $3) AS i
"""
_LINES = """
INSERT INTO channel_order_lines (tenant_id, id, created_at, order_id, account_id, channel_line_id, sku, quantity,
    unit_price_fen, gross_fen, cost_fen, split_rule, refunded_quantity, refunded_fen, delivery_ref)
SELECT $1, md5('l' || i)::uuid, now(), md5('o' || i)::uuid, $2, '1', 'SKU', 1, 1000 + i % 9000, 1000 + i % 9000,
    700, $4::json, 0, 0, ''
FROM generate_series(1, $3) AS i
"""
_ENTRIES = """
INSERT INTO split_entries (tenant_id, id, created_at, account_id, line_id, order_id, event, event_ref, component,
    party, party_ref, amount_fen, period, occurred_at)
SELECT $1, gen_random_uuid(), now(), $2, md5('l' || i)::uuid, md5('o' || i)::uuid, 'sale', 'O' || i, p.component,
    p.party, '', CASE p.party WHEN 'channel' THEN (1000 + i % 9000) / 10
                 ELSE (1000 + i % 9000) - (1000 + i % 9000) / 10 END, '2026-03',
    timestamptz '2026-03-01 00:00+08' + (i % 2000000) * interval '1 second'
FROM generate_series(1, $3) AS i CROSS JOIN (VALUES ('c0', 'channel'), ('net', 'tenant')) AS p(component, party)
"""
_STATEMENT = """
INSERT INTO statements (tenant_id, id, created_at, account_id, source, filename, digest, encoding, status,
    lines_total, lines_new, lines_repeated, lines_rejected, problems, error, created_by)
VALUES ($1, $2, now(), $3, 'file', 'bench.csv', '', 'utf-8', 'done', $4, $4, 0, 0, '[]', '', 'bench')
"""
_STATEMENT_LINES = """
INSERT INTO statement_lines (tenant_id, id, created_at, account_id, statement_id, line_id, order_id, order_line_id,
    kind, amount_fen, commission_fen, occurred_at, period, description, row_number)
SELECT $1, gen_random_uuid(), now(), $2, $3, 'S' || i,
    CASE WHEN i % 100 = 1 THEN 'X' || i WHEN i % 1000 = 5 THEN 'O' || (i - 1) ELSE 'O' || i END,
    CASE WHEN i % 10 = 4 THEN '' ELSE '1' END, 'sale',
    CASE WHEN i % 1000 = 5 THEN 1000 + (i - 1) % 9000 WHEN i % 100 = 2 THEN 999 + i % 9000 ELSE 1000 + i % 9000 END,
    CASE WHEN i % 1000 = 5 THEN (1000 + (i - 1) % 9000) / 10 WHEN i % 100 = 3 THEN (1000 + i % 9000) / 8
         ELSE (1000 + i % 9000) / 10 END,
    timestamptz '2026-03-01 00:00+08' + (i % 2000000) * interval '1 second', '2026-03', '', i
FROM generate_series(1, $4) AS i
"""
_BARE = """
CREATE TEMP TABLE bare_join AS
SELECT sl.id AS statement_line_id, l.id AS order_line_id, sl.amount_fen - l.gross_fen AS diff_fen
FROM statement_lines sl
JOIN channel_orders co ON co.tenant_id = sl.tenant_id AND co.account_id = sl.account_id
    AND co.channel_order_id = sl.order_id
JOIN channel_order_lines l ON l.tenant_id = co.tenant_id AND l.order_id = co.id AND l.channel_line_id = '1'
WHERE sl.tenant_id = $1 AND sl.account_id = $2 AND sl.period = $3
"""


async def _setup(kernel: Kernel, owner_dsn: str, lines: int) -> tuple[uuid.UUID, uuid.UUID]:
    async with kernel.db.transaction() as db:
        await ensure_default_plans(db)
        created = await create_tenant(kernel, db, TenantCreate(
            name="Bench", slug=f"bench-{os.getpid()}", owner_email="bench@example.com", plan="growth"))
    tenant_id = created.tenant.id
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            account = ConnectorAccount(connector_id="sandbox", kind="sales_channel", name="Bench shop", config={})
            db.add(account)
            await db.flush()
            account_id = account.id
    conn = await asyncpg.connect(owner_dsn)
    try:
        started = time.perf_counter()
        await conn.execute(_ORDERS, tenant_id, account_id, lines)
        await conn.execute(_LINES, tenant_id, account_id, lines, RULE)
        await conn.execute(_ENTRIES, tenant_id, account_id, lines)
        statement_id = uuid.uuid4()
        await conn.execute(_STATEMENT, tenant_id, statement_id, account_id, lines)
        await conn.execute(_STATEMENT_LINES, tenant_id, account_id, statement_id, lines)
        await conn.execute("ANALYZE channel_orders; ANALYZE channel_order_lines; ANALYZE split_entries; "
                           "ANALYZE statement_lines; ANALYZE recon_items")
        print(f"generated {lines:,} orders, lines, statement lines and {2 * lines:,} split rows "
              f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    finally:
        await conn.close()
    return tenant_id, account_id


async def _temp_bytes(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()"))


def _reset_peak(pid: int | str) -> None:
    """Reset a process's peak RSS (``VmHWM``) so the next reading is this round's peak (Linux, same user)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _peak_mb(pid: int | str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _service(kernel: Kernel, owner: asyncpg.Connection, tenant_id: uuid.UUID,
                   account_id: uuid.UUID) -> tuple[float, dict[str, int], int, float, float]:
    await owner.execute("SELECT pg_stat_clear_snapshot()")
    before = await _temp_bytes(owner)
    _reset_peak("self")
    started = time.perf_counter()
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            backend = int(await db.scalar(text("SELECT pg_backend_pid()")) or 0)
            _reset_peak(backend)
            run = await reconcile(db, account_id, PERIOD, by="bench")
            counts = dict(run.counts)
            pg_peak = _peak_mb(backend)
    elapsed = time.perf_counter() - started
    py_peak = _peak_mb("self")
    await asyncio.sleep(0.6)  # the statistics collector flushes at most every 500 ms
    await owner.execute("SELECT pg_stat_clear_snapshot()")
    spilled = await _temp_bytes(owner) - before
    await owner.execute("TRUNCATE recon_items")  # the next round sees the same data (nothing references items)
    return elapsed, counts, spilled, py_peak, pg_peak


async def _bare(owner: asyncpg.Connection, tenant_id: uuid.UUID, account_id: uuid.UUID) -> tuple[float, int]:
    started = time.perf_counter()
    async with owner.transaction():
        await owner.execute(_BARE, tenant_id, account_id, PERIOD)
        rows = int(await owner.fetchval("SELECT count(*) FROM bare_join"))
    elapsed = time.perf_counter() - started
    await owner.execute("DROP TABLE bare_join")
    return elapsed, rows


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    key = "mk-bench:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    machine = machine_line()
    results: list[tuple[float, float, dict[str, int], int, float, float]] = []
    async with throwaway_database() as bench_db:
        settings = load_settings(env={}, database_url=bench_db.app_url, database_owner_url=bench_db.owner_url,
                                 master_key=key, log_level="WARNING")
        kernel = Kernel.create(settings)
        owner = await asyncpg.connect(asyncpg_dsn(bench_db.owner_url))
        try:
            tenant_id, account_id = await _setup(kernel, asyncpg_dsn(bench_db.owner_url), args.lines)
            work_mem = await owner.fetchval("SHOW work_mem")
            for n in range(args.rounds):
                s_time, counts, spilled, py_peak, pg_peak = await _service(kernel, owner, tenant_id, account_id)
                b_time, _rows = await _bare(owner, tenant_id, account_id)
                results.append((s_time, b_time, counts, spilled, py_peak, pg_peak))
                print(f"round {n + 1}: service {s_time:.2f} s, bare {b_time:.2f} s", file=sys.stderr)
        finally:
            await owner.close()
            await kernel.close()
    print(f"Machine: {machine}")
    print(f"{args.lines:,} statement lines of one account and period; PostgreSQL default work_mem {work_mem} "
          f"(the run sets {WORK_MEM} for its transaction)\n")
    print("| round | reconcile (s) | lines/s | bare join (s) | reconcile / bare | peak RSS: this process | "
          "peak RSS: PG backend | PG temp written | classes |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for n, (s_time, b_time, counts, spilled, py_peak, pg_peak) in enumerate(results, start=1):
        classes = ", ".join(f"{k} {v:,}" for k, v in counts.items() if v and k not in ("carried", "resolved"))
        print(f"| {n} | {s_time:.2f} | {args.lines / s_time:,.0f} | {b_time:.2f} | {s_time / b_time:.1f}× "
              f"| {py_peak:.0f} MB | {pg_peak:.0f} MB | {spilled / 2**20:.0f} MB | {classes} |")
    print(f"\nLoad average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    ratios = [s / b for s, b, *_ in results]
    print(f"\nreconcile / bare join: min {min(ratios):.2f}×, median {statistics.median(ratios):.2f}×; "
          f"reconcile min {min(r[0] for r in results):.2f} s, median {statistics.median(r[0] for r in results):.2f} s")


if __name__ == "__main__":
    asyncio.run(main())
