"""Open-loop latency at half of the measured capacity: grants (aim p99 ≤ 150 ms) and redemptions (p95 ≤ 50 ms).

Run: ``.venv/bin/python bench/open_loop.py [--repeats 3] [--seconds 10] [--fraction 0.5] [--workers 2]``

A throwaway database migrated like production (app role with RLS); kaquan under uvicorn in service mode (Redis
database 9 by default, which must be empty); one tenant with an API client (``grants:write``,
``redemptions:write``), a product with stock to grant and sealed, issued number + PIN codes to redeem.

Each repeat, for grants and then for redemptions:

1. **capacity**: wrk, closed loop, ``--capacity-clients`` connections for ``--capacity-seconds`` after a short
   warm-up: the requests/s the server sustains (answers 2xx per second);
2. **open loop at ``--fraction`` of it**: ``bench/loadgen.py`` in its own process sends requests on a fixed
   schedule, whatever the answers (a closed-loop generator such as wrk would hide stalls by waiting:
   coordinated omission), latency from each request's scheduled moment, for ``--seconds`` after a warm-up
   at the same rate. Grants: one code to a new member, own Idempotency-Key; redemptions: a fresh code each.

Between two phases the bench waits until the server is idle again (wrk leaves requests in flight that the
server still serves) and the sealer has sealed the tenant's audit events. Printed per repeat:
capacity, target and achieved rate, p50/p95/p99/max, the generator's own lag, statuses; then the median and
worst of the aimed percentile over the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

import asyncpg
from _pg import ADMIN_URL, ROOT, asyncpg_dsn, machine_line, throwaway_database
from compare import kaquan_env
from cpu import wait_idle
from fixtures import BenchTenant, ensure_plan, fetch_token, onboard, sealed_cards, stock_codes, top_up
from http_overhead import SERVER_PIDS, bench_settings, quiet_app, redis_db_state, redis_flush, uvicorn_server
from seal_state import detect, unsealed
from wrk_load import WrkResult, run_wrk, run_wrk_codes

from core.crypto.envelope import generate_master_key_spec

REDIS_URL = "redis://127.0.0.1:6379/9"
LOADGEN = ROOT / "bench" / "loadgen.py"
AIMS = {"grants": ("p99_ms", 150.0), "redemptions": ("p95_ms", 50.0)}


def grant_template(product_id: object) -> str:
    return (
        f'{{"product_id": "{product_id}", "quantity": 1, "external_id": "m-{{key}}", '
        '"channel": "none", "campaign_ref": "open-loop"}'
    )


@dataclass
class Phase:
    kind: str  # "grants" | "redemptions"
    repeat: int
    capacity: WrkResult
    target: float
    result: dict[str, Any]

    @property
    def aimed(self) -> float:
        return float(self.result[AIMS[self.kind][0]])


class Bench:
    """The server, the tenant and the two phases of each repeat."""

    def __init__(
        self, args: argparse.Namespace, base: str, t: BenchTenant, owner_dsn: str, work: str
    ) -> None:
        self.args, self.base, self.t, self.owner_dsn, self.work = args, base, t, owner_dsn, work

    async def settle(self) -> None:
        """Wait until the server has served what the last load left in flight and sealed its events."""
        await wait_idle(SERVER_PIDS[self.base])
        conn = await asyncpg.connect(self.owner_dsn)
        try:
            schema = await detect(conn)
            for _ in range(int(self.args.seal_timeout * 4)):
                if not await unsealed(conn, schema, self.t.tenant_id):
                    break
                await asyncio.sleep(0.25)
        finally:
            await conn.close()
        await asyncio.sleep(1.0)

    async def cards_file(self, n: int) -> str:
        cards = await sealed_cards(self.owner_dsn, self.t, n)
        path = os.path.join(self.work, f"cards-{os.urandom(4).hex()}.txt")
        with open(path, "w", encoding="ascii") as f:  # noqa: ASYNC230 - a local file, before the load starts
            f.write("".join(f"{number} {pin}\n" for number, pin in cards))
        return path

    async def capacity(self, kind: str) -> WrkResult:
        a, conns = self.args, self.args.capacity_clients
        if kind == "grants":
            await top_up(self.owner_dsn, self.t, a.stock_rate * (a.capacity_seconds + 2) + 1000)
            await run_wrk(
                self.base,
                "/api/v1/grants",
                self.t.token,
                grant_template(self.t.product_id),
                connections=conns,
                seconds=2,
            )
            return await run_wrk(
                self.base,
                "/api/v1/grants",
                self.t.token,
                grant_template(self.t.product_id),
                connections=conns,
                seconds=a.capacity_seconds,
            )
        for seconds in (2, a.capacity_seconds):  # a warm-up, then the measured load: a file of codes each
            path = await self.cards_file(a.stock_rate * seconds + conns)
            try:
                result = await run_wrk_codes(
                    self.base, "/api/v1/redemptions", self.t.token, path, connections=conns, seconds=seconds
                )
            finally:
                os.unlink(path)
        return result

    async def open_loop(self, kind: str, rate: float) -> dict[str, Any]:
        a = self.args
        n = int(rate * (a.seconds + a.warmup)) + 10
        spec: dict[str, Any] = {
            "url": self.base,
            "rate": rate,
            "seconds": a.seconds,
            "warmup": a.warmup,
            "connections": 400,
            "headers": {"Authorization": f"Bearer {self.t.token}"},
        }
        cleanup = None
        if kind == "grants":
            await top_up(self.owner_dsn, self.t, n + 1000)
            spec |= {
                "path": "/api/v1/grants",
                "bodies": {"kind": "grant", "template": grant_template(self.t.product_id)},
            }
        else:
            cleanup = await self.cards_file(n)
            spec |= {"path": "/api/v1/redemptions", "bodies": {"kind": "cards", "file": cleanup}}
        spec_path = os.path.join(self.work, "spec.json")
        with open(spec_path, "w", encoding="utf-8") as f:  # noqa: ASYNC230 - a local file, before the load
            json.dump(spec, f)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(LOADGEN),
                spec_path,
                cwd=str(ROOT / "bench"),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate()
        finally:
            if cleanup:
                os.unlink(cleanup)
        if proc.returncode != 0:
            raise SystemExit(f"loadgen failed: {err.decode()[-2000:]}")
        return dict(json.loads(out.decode().strip().splitlines()[-1]))

    async def phase(self, kind: str, repeat: int) -> Phase:
        capacity = await self.capacity(kind)
        await self.settle()
        target = max(capacity.ok_per_second * self.args.fraction, 1.0)
        result = await self.open_loop(kind, target)
        await self.settle()
        return Phase(kind, repeat, capacity, target, result)


async def run(args: argparse.Namespace) -> None:
    if await redis_db_state(args.redis_url) != "empty":
        raise SystemExit(f"{args.redis_url} is not an empty, reachable Redis database")
    print(f"# Open-loop latency at {args.fraction:.0%} of capacity — {dt.date.today().isoformat()}")
    print()
    print(f"Machine: {machine_line()}")
    phases: list[Phase] = []
    try:
        async with throwaway_database(args.admin_url, prefix="kaquan_bench_open") as db:
            with tempfile.TemporaryDirectory(prefix="kaquan-bench-") as work:
                settings = bench_settings(db, work, generate_master_key_spec("mk-bench"), args.redis_url)
                owner_dsn = asyncpg_dsn(db.owner_url)
                app = quiet_app(settings)
                await ensure_plan(app)
                t = await onboard(app, "openloop", ["grants:write", "redemptions:write"])
                await fetch_token(app, t)
                await stock_codes(owner_dsn, t, args.stock_rate * (args.capacity_seconds + 2))
                _setup_line(args)
                print()
                print(
                    "| repeat | kind | capacity/s (wrk) | target/s | achieved/s | p50 ms | p95 ms | p99 ms | "
                    "max ms | generator lag p99 ms | statuses |"
                )
                print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
                async with uvicorn_server(
                    "core.app:create_app", kaquan_env(settings, args), str(ROOT)
                ) as base:
                    bench = Bench(args, base, t, owner_dsn, work)
                    for repeat in range(1, args.repeats + 1):
                        for kind in ("grants", "redemptions"):
                            phase = await bench.phase(kind, repeat)
                            phases.append(phase)
                            print(_row(phase), flush=True)
    finally:
        await redis_flush(args.redis_url)
    _verdicts(phases)


def _setup_line(args: argparse.Namespace) -> None:
    print(
        f"kaquan under uvicorn, {args.workers} workers, service mode, pool {args.pool_size} + {args.max_overflow}; "
        f"capacity: wrk, {args.capacity_clients} connections, {args.capacity_seconds} s after 2 s; open loop: "
        f"bench/loadgen.py (own process), {args.fraction:.0%} of that capacity for {args.seconds} s after "
        f"{args.warmup} s at the same rate, latency from the scheduled moment."
    )


def _row(p: Phase) -> str:
    r = p.result
    achieved = r["sent"] / r["seconds"] if r["seconds"] else 0.0
    return (
        f"| {p.repeat} | {p.kind} | {p.capacity.ok_per_second:,.0f} | {p.target:,.0f} | {achieved:,.0f} | "
        f"{r['p50_ms']:,.1f} | {r['p95_ms']:,.1f} | {r['p99_ms']:,.1f} | {r['max_ms']:,.0f} | "
        f"{r['lag_p99_ms']:,.1f} | {r['statuses']} |"
    )


def _verdicts(phases: list[Phase]) -> None:
    print()
    for kind, (field, aim) in AIMS.items():
        values = [p.aimed for p in phases if p.kind == kind]
        if not values:
            continue
        name = field.removesuffix("_ms")
        worst, median = max(values), statistics.median(values)
        print(
            f"**{kind}: {name} median {median:,.1f} ms, worst {worst:,.1f} ms over {len(values)} repeats** "
            f"(aim ≤ {aim:.0f} ms: {'met' if median <= aim else 'missed'} by the median, "
            f"{'met' if worst <= aim else 'missed'} by the worst)."
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="open loop, measured")
    parser.add_argument("--warmup", type=int, default=3, help="open loop, first seconds not counted")
    parser.add_argument("--fraction", type=float, default=0.5, help="open-loop rate as a share of capacity")
    parser.add_argument("--capacity-clients", type=int, default=32)
    parser.add_argument("--capacity-seconds", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--max-overflow", type=int, default=20)
    parser.add_argument(
        "--stock-rate", type=int, default=1500, help="requests/s the stock of a load is sized for"
    )
    parser.add_argument("--seal-timeout", type=float, default=60.0)
    parser.add_argument("--redis-url", default=REDIS_URL, help="an EMPTY Redis database")
    parser.add_argument("--admin-url", default=ADMIN_URL)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
