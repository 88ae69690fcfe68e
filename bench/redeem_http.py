"""Redemption over HTTP at a steady rate: ``POST /api/v1/redemptions`` on PostgreSQL + Redis.

Run: ``.venv/bin/python bench/redeem_http.py [--rate 300] [--seconds 20] [--workers 2]``

A throwaway PostgreSQL database is migrated like production (the app connects as the non-owner role, RLS
applies) and the app runs in service mode: Redis for rate limits and the risk engine's counters, an empty
Redis database of its own (``--redis-url``). A tenant on a plan with a huge rate limit gets a number + PIN
product whose codes are sealed, stocked and issued through the allocation service, and an API client with
``redemptions:write``. Then uvicorn (``--workers`` processes) is sent, through a lean keep-alive client
(``bench/raw_http.py``: the load generator shares the two cores), redemptions of distinct codes, each with its PIN, store and terminal, on an
open-loop schedule: request *i* leaves at ``start + i / rate`` whatever the earlier ones are doing, and its
latency is measured from that scheduled moment (so a stall is not hidden by the load generator waiting).

``--baseline``: kaquan against a hand-written asyncpg redemption (the same statements) in interleaved
closed-loop rounds (wrk) at 32 and 200 clients; see ``bench/compare_redeem.py``.

Every answer must be ``201``; afterwards the database must hold exactly one redemption per code sent and
every one of those codes must be ``redeemed``. Printed: achieved rate, p50/p95/p99/max latency, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

import compare
import compare_redeem
from _pg import ADMIN_URL, ROOT, machine_line, throwaway_database
from http_overhead import (
    bench_settings,
    quiet_app,
    redis_db_state,
    redis_flush,
    running,
    settings_env,
    uvicorn_server,
)
from raw_http import RawPool
from sqlalchemy import func, select

from core.catalog.models import Product
from core.crypto.envelope import generate_master_key_spec
from core.db.context import set_tenant, tenant_context
from core.db.ids import readable_ref
from core.inventory.allocation import allocate
from core.inventory.models import Batch, Code
from core.inventory.vault import seal
from core.redemption.models import Redemption
from tenants import onboarding
from tenants.clients import create_client
from tenants.schemas import PlanCreate, TenantCreate

REDIS_URL = os.environ.get("KAQUAN_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
PATH = "/api/v1/redemptions"


@dataclass
class Card:
    number: str
    pin: str


async def prepare(settings: object, count: int) -> tuple[str, list[Card], object]:
    """Tenant, plan, API client (token via ``/oauth/token``) and ``count`` issued number + PIN codes."""
    app = quiet_app(settings)  # type: ignore[arg-type]
    kernel = app.state.kernel
    async with kernel.db.transaction() as s:
        await onboarding.ensure_default_plans(s)
        await onboarding.create_plan(
            s, PlanCreate(code="bench", name="Bench", requests_per_minute=10_000_000, max_api_clients=10)
        )
        created = await onboarding.create_tenant(
            kernel,
            s,
            TenantCreate(
                name="Redeem Co", slug="redeem-co", owner_email="o@redeem.example.com", plan="bench"
            ),
        )
    set_tenant(None)
    tenant_id = created.tenant.id
    cards = [
        Card(f"RD{secrets.token_hex(8).upper()}", f"{secrets.randbelow(10**6):06d}") for _ in range(count)
    ]
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as s:
            product = Product(
                sku="BENCH-REDEEM",
                kind="code",
                code_format="number_pin",
                name_zh="核销压测券",
                name_en="Redemption bench voucher",
                face_value=2000,
            )
            s.add(product)
            await s.flush()
            batch = Batch(
                ref=readable_ref("B"),
                product_id=product.id,
                supplier="bench",
                unit_cost=100,
                code_count=count,
            )
            s.add(batch)
            await s.flush()
            cipher = await kernel.keys.cipher(s)
            for c in cards:
                sealed = seal(cipher, c.number, c.pin)
                s.add(
                    Code(
                        product_id=product.id,
                        batch_id=batch.id,
                        digest=sealed.digest,
                        secret=sealed.secret,
                        last4=sealed.last4,
                        has_pin=True,
                    )
                )
            await s.flush()
            left = count
            while left:
                n = min(left, 10_000)
                await allocate(s, product.id, n, "redeem bench")
                left -= n
            row, secret = await create_client(s, "bench", ["redemptions:read", "redemptions:write"])
    async with running(app) as c:
        r = await c.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(row.client_id, secret)
        )
        r.raise_for_status()
        token = r.json()["access_token"]
    return token, cards, tenant_id


@dataclass
class Run:
    sent: int
    seconds: float
    latencies: list[float]
    statuses: Counter[int]
    first_error: str | None

    def pct(self, q: float) -> float:
        lat = sorted(self.latencies)
        return lat[min(int(len(lat) * q), len(lat) - 1)] * 1000 if lat else 0.0


async def steady(client: RawPool, token: str, cards: list[Card], rate: float) -> Run:
    """Send one redemption per card at ``rate`` per second on an open-loop schedule."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    first_error: list[str] = []

    async def one(i: int, card: Card, due: float) -> None:
        body = {"code": card.number, "pin": card.pin, "store": f"S{i % 50:02d}", "terminal": f"T{i % 7}"}
        try:
            status, text = await client.post(PATH, headers, json.dumps(body).encode())
            if status != 201 and not first_error:
                first_error.append(f"{status}: {text[:300]!r}")
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            status = 0
            if not first_error:
                first_error.append(repr(exc))
        latencies.append(time.perf_counter() - due)
        statuses[status] += 1

    start = time.perf_counter() + 0.05
    tasks = []
    for i, card in enumerate(cards):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, card, due)))
    await asyncio.gather(*tasks)
    return Run(
        len(cards), time.perf_counter() - start, latencies, statuses, first_error[0] if first_error else None
    )


async def sequential(client: RawPool, token: str, cards: list[Card]) -> Run:
    """One redemption at a time: the service time of a redemption without queueing."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    start = time.perf_counter()
    for i, card in enumerate(cards):
        t0 = time.perf_counter()
        body = {"code": card.number, "pin": card.pin, "store": "SEQ", "terminal": f"T{i}"}
        status, _ = await client.post(PATH, headers, json.dumps(body).encode())
        latencies.append(time.perf_counter() - t0)
        statuses[status] += 1
    return Run(len(cards), time.perf_counter() - start, latencies, statuses, None)


async def check_once(settings: object, tenant_id: object, cards: list[Card]) -> tuple[int, int]:
    """(redemptions recorded, codes redeemed) for the bench's tenant: both must equal the codes sent."""
    app = quiet_app(settings)  # type: ignore[arg-type]
    kernel = app.state.kernel
    try:
        with tenant_context(tenant_id):  # type: ignore[arg-type]
            async with kernel.db.transaction() as s:
                reds = int(await s.scalar(select(func.count()).select_from(Redemption)) or 0)
                done = int(
                    await s.scalar(select(func.count()).select_from(Code).where(Code.state == "redeemed"))
                    or 0
                )
    finally:
        await kernel.close()
    return reds, done


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=300.0, help="redemptions per second")
    parser.add_argument("--seconds", type=int, default=None, help="default 20; with --baseline 8 per load")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds at the same rate first (not counted)"
    )
    parser.add_argument(
        "--sequential",
        type=int,
        default=200,
        help="redemptions sent one at a time first (service time without queueing)",
    )
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--redis-url", default=REDIS_URL, help="an EMPTY Redis database for the app")
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="kaquan against a hand-written asyncpg redemption in interleaved wrk rounds (8 s each, 3 rounds)",
    )
    compare.add_arguments(parser, stock_rate=2000)
    args = parser.parse_args()
    args.seconds = args.seconds or (8 if args.baseline else 20)
    if args.baseline:
        args.warmup = int(args.warmup)
        await compare_redeem.run(args)
        return
    if await redis_db_state(args.redis_url) != "empty":
        raise SystemExit(f"{args.redis_url} is not an empty, reachable Redis database")
    print(machine_line())
    warm, measured = int(args.rate * args.warmup), int(args.rate * args.seconds)
    try:
        async with throwaway_database(args.admin_url, prefix="kaquan_bench_redeem") as db:
            with tempfile.TemporaryDirectory(prefix="kaquan-bench-") as data_dir:
                settings = bench_settings(db, data_dir, generate_master_key_spec("mk-bench"), args.redis_url)
                t0 = time.perf_counter()
                token, cards, tenant_id = await prepare(settings, args.sequential + warm + measured)
                print(f"set-up: {len(cards)} issued number + PIN codes in {time.perf_counter() - t0:.1f} s")
                async with contextlib.AsyncExitStack() as stack:
                    env = settings_env(settings) | {"WEB_CONCURRENCY": str(args.workers)}
                    url = await stack.enter_async_context(
                        uvicorn_server("core.app:create_app", env, str(ROOT))
                    )
                    client = RawPool(url, 200)
                    stack.push_async_callback(client.close)
                    where = (
                        f"uvicorn, {args.workers} worker process{'es' if args.workers > 1 else ''}, 127.0.0.1"
                    )
                    seq = (
                        await sequential(client, token, cards[: args.sequential]) if args.sequential else None
                    )
                    rest = cards[args.sequential :]
                    if warm:
                        await steady(client, token, rest[:warm], args.rate)
                    run = await steady(client, token, rest[warm:], args.rate)
                reds, done = await check_once(settings, tenant_id, cards)
    finally:
        await redis_flush(args.redis_url)
    ok = run.statuses.get(201, 0)
    if seq is not None:
        print(
            f"one at a time: {seq.sent} redemptions, {seq.sent / seq.seconds:.1f}/s, statuses "
            f"{dict(seq.statuses)}; latency ms p50 {seq.pct(0.5):.1f} · p95 {seq.pct(0.95):.1f} · "
            f"p99 {seq.pct(0.99):.1f}"
        )
    print(
        f"server: {where}; PostgreSQL + Redis; target {args.rate:.0f}/s for {args.seconds:.0f} s "
        f"(+{args.warmup:.0f} s warm-up)"
    )
    print(
        f"achieved: {run.sent / run.seconds:.1f} requests/s; {ok} × 201 of {run.sent}; "
        f"statuses {dict(run.statuses)}"
    )
    print(
        f"latency ms: p50 {run.pct(0.5):.1f} · p95 {run.pct(0.95):.1f} · p99 {run.pct(0.99):.1f} · "
        f"max {run.pct(1.0):.1f}"
    )
    print(f"exactly once: {reds} redemptions and {done} redeemed codes for {len(cards)} codes sent")
    if run.first_error:
        print(f"first error: {run.first_error}")
    verdict = "met" if run.pct(0.95) <= 50 else "missed"
    print(
        f"| {where} | {args.rate:.0f} | {run.sent / run.seconds:.0f} | {run.pct(0.5):.1f} | {run.pct(0.95):.1f} | "
        f"{run.pct(0.99):.1f} | {ok}/{run.sent} | p95 ≤ 50 ms {verdict} |"
    )


if __name__ == "__main__":
    asyncio.run(main())
