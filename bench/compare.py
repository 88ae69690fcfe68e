"""What the comparison benchmarks share: their options, the servers' environments, the step between two
loads and the table of rows written (``compare_grant.py``, ``compare_redeem.py``, ``pgbouncer.py``)."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from _pg import asyncpg_dsn
from cpu import Probe
from fixtures import BenchTenant, count_rows, top_up
from http_overhead import settings_env
from rounds import Contender, Round, Steps, header, interleaved, round_row
from seal_state import SealSchema, detect, unsealed


def add_arguments(parser: argparse.ArgumentParser, stock_rate: int = 2500) -> None:
    """The options of a comparison run (``--seconds``, ``--workers``, ``--redis-url``, ``--admin-url`` are the
    script's own)."""
    parser.add_argument("--rounds", type=int, default=3, help="rounds per concurrency")
    if "--warmup" not in parser._option_string_actions:  # redeem_http.py has its own (3 s)
        parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load first")
    parser.add_argument(
        "--concurrencies", default="32,200", help="wrk connections, comma-separated (default 32,200)"
    )
    parser.add_argument("--pool-size", type=int, default=10, help="pool size per worker (all servers)")
    parser.add_argument("--max-overflow", type=int, default=20, help="pool overflow per worker")
    parser.add_argument(
        "--stock-rate", type=int, default=stock_rate, help="requests/s the stock of a run is sized for"
    )
    parser.add_argument("--seal-timeout", type=float, default=60.0, help="seconds to wait for sealing")


def baseline_env(db_app_url: str, t: BenchTenant, args: argparse.Namespace) -> dict[str, str]:
    return {
        "BASELINE_DSN": asyncpg_dsn(db_app_url),
        "BASELINE_TENANT_ID": str(t.tenant_id),
        "BASELINE_CLIENT_PK": str(t.client_pk),
        "BASELINE_TOKEN": t.token,
        "BASELINE_DATA_KEY": t.data_key.hex(),
        "BASELINE_POOL_SIZE": str(args.pool_size),
        "BASELINE_MAX_OVERFLOW": str(args.max_overflow),
        "WEB_CONCURRENCY": str(args.workers),
    }


def kaquan_env(settings: Any, args: argparse.Namespace) -> dict[str, str]:
    """The app's settings as ``KAQUAN_*`` variables, with the pool of the comparison."""
    return settings_env(settings) | {
        "WEB_CONCURRENCY": str(args.workers),
        "KAQUAN_DB_POOL_SIZE": str(args.pool_size),
        "KAQUAN_DB_MAX_OVERFLOW": str(args.max_overflow),
    }


class Settler:
    """Between two loads: wait until the audit sealer has sealed the tenant of a kaquan server that just ran
    (``sealed``: those contenders' keys; the time is the round's note); then (:meth:`refill`) top up that
    tenant's stock to ``per_run`` codes (0: no stock kept) and pause a second."""

    def __init__(
        self, owner_dsn: str, tenants: dict[str, BenchTenant], per_run: int, timeout: float, sealed: set[str]
    ) -> None:
        self.owner_dsn, self.tenants, self.per_run, self.timeout = owner_dsn, tenants, per_run, timeout
        self.sealed = sealed
        self.schema: SealSchema | None = None

    async def __call__(self, contender: Contender) -> str:
        if contender.key in self.sealed:
            return await self.wait_sealed(self.tenants[contender.key])
        return ""

    def counter(self, table: str) -> Callable[[Contender], Awaitable[int]]:
        """``count`` for the rounds: the rows of ``table`` of the contender's tenant."""

        async def count(contender: Contender) -> int:
            return await count_rows(self.owner_dsn, table, self.tenants[contender.key])

        return count

    async def refill(self, contender: Contender) -> None:
        if self.per_run:
            await top_up(self.owner_dsn, self.tenants[contender.key], self.per_run)
        await asyncio.sleep(1.0)

    async def wait_sealed(self, t: BenchTenant) -> str:
        conn = await asyncpg.connect(self.owner_dsn)
        try:
            self.schema = self.schema or await detect(conn)
            started = time.perf_counter()
            left = await unsealed(conn, self.schema, t.tenant_id)
            while left and time.perf_counter() - started < self.timeout:
                await asyncio.sleep(0.25)
                left = await unsealed(conn, self.schema, t.tenant_id)
        finally:
            await conn.close()
        took = time.perf_counter() - started
        return f"sealed after {took:.1f} s" if not left else f"{left} unsealed after {took:.0f} s"


async def run_rounds(
    contenders: list[Contender],
    load: Any,
    settler: Settler,
    *,
    keys: list[str],
    db_name: str,
    table: str,
    unit: str,
    pairs: list[tuple[str, str]],
    concurrencies: list[int],
    args: argparse.Namespace,
) -> list[Round]:
    """Print the table's header, then run the interleaved rounds of ``contenders`` under ``load`` (each
    round's row printed as it ends), measuring CPU with a probe and counting rows of ``table``."""
    print()
    print("\n".join(header(keys, pairs, unit)))
    probe = Probe(settler.owner_dsn, db_name)
    try:
        return await interleaved(
            contenders,
            Steps(load, settler, probe, settler.refill, settler.counter(table)),
            concurrencies=concurrencies,
            rounds=args.rounds,
            seconds=args.seconds,
            warmup=args.warmup,
            on_round=lambda r: print(round_row(r, keys, pairs), flush=True),
        )
    finally:
        await probe.close()


def rows_table(rows: dict[str, dict[str, int]], per: str) -> str:
    """Rows written per ``per`` row (e.g. per grant), by table and server: the work each server did."""
    tables = [t for t in next(iter(rows.values())) if t != per]
    lines = [
        f"Rows written per row of `{per}` (whole run, warm-ups included):",
        "",
        "| server | " + " | ".join(f"`{t}`" for t in [per, *tables]) + " |",
        "|---|" + "---:|" * (len(tables) + 1),
    ]
    for key, counts in rows.items():
        n = counts[per] or 1
        lines.append(
            f"| {key} | {counts[per]:,} | " + " | ".join(f"{counts[t] / n:.2f}" for t in tables) + " |"
        )
    return "\n".join(lines)
