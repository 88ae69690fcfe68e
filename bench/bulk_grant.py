"""Bulk grants: a 10,000-recipient job against the HTTP grant rate, measured in the same run, alternated.

Run: ``.venv/bin/python bench/bulk_grant.py [--recipients 10000] [--rounds 3] [--http-seconds 15]``

A throwaway PostgreSQL database is migrated like production (app role ``kaquan_app``, RLS on); the app runs
in service mode (rate limits and risk counters on Redis database 13 on 127.0.0.1, which must be empty, and
is emptied afterwards). One tenant on a plan with a huge rate limit, one API client with ``grants:write``
and two products are set up through the service layer: one stocked for the HTTP grants, one with
``rounds × recipients`` codes for the bulk grants.

Each round measures, one after the other:

* **HTTP** — ``POST /api/v1/grants`` for ``--http-seconds`` through the real stack: uvicorn with
  ``--workers`` processes on 127.0.0.1, loaded by ``wrk`` with ``--concurrency`` connections (the machinery
  of ``bench/grant_http.py``; without ``wrk``, its httpx client). Each request grants 1 code to a new
  member with its own ``Idempotency-Key`` and no delivery.
* **Single** — ``--single`` grants through :func:`core.grants.services.create_grant`, one transaction
  each, one after the other, in this process (what the job did per row before it batched, and the work of
  one API request without HTTP): the baseline that shares the bulk job's process and CPU share, so its
  ratio does not move with how hard the shared machine squeezes the HTTP server.
* **Bulk** — the ``run_bulk_grant`` job body over a bulk grant of ``--recipients`` rows (new phone numbers
  each round, 1 code each, no delivery), validated and confirmed beforehand (the upload is not timed),
  run in this process on the same database and Redis — what a ``kaquan worker`` does with the job. A
  worker has no in-process audit sealer (the API processes have one; the scheduled ``seal_audit_chain``
  job seals what workers write), so neither has this process. With ``--seal`` the job's audit events are
  sealed afterwards, timed apart, and the rate is also given with that time included (slow: see
  ``docs/benchmarks.md``).

The HTTP server is idle while the job runs and the job is idle while wrk runs. Printed: each round's
rates and the ratios bulk recipients/s ÷ HTTP grants/s and ÷ single grants/s, then min and median of
each; duplicate codes are counted in the database at the end. Aim: the bulk job at least 2× the HTTP
grant rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import io
import statistics
import tempfile
import time
import uuid

import asyncpg
from _pg import ADMIN_URL, ROOT, asyncpg_dsn, machine_line, throwaway_database
from grant_http import load, set_up
from http_overhead import (
    REDIS_URL,
    bench_settings,
    quiet_app,
    redis_db_state,
    redis_flush,
    settings_env,
    uvicorn_server,
)
from sqlalchemy import insert
from wrk_load import have_wrk, run_wrk

from core.audit.services import seal_chain
from core.bulk_grants import run as bulk_run
from core.bulk_grants import services as bulk_services
from core.bulk_grants.schemas import BulkGrantFields
from core.catalog.models import Product
from core.crypto.envelope import generate_master_key_spec
from core.db.context import tenant_context
from core.db.ids import new_id, readable_ref
from core.db.maintenance import refresh_statistics
from core.grants.schemas import GrantRequest
from core.grants.services import create_grant
from core.inventory.models import Batch, Code
from core.inventory.vault import seal


async def stock_bulk_product(kernel: object, tenant_id: uuid.UUID, codes: int) -> str:
    """A second product (``BENCH-BULK``) with ``codes`` number-only codes; returns its SKU."""
    now = dt.datetime.now(dt.UTC)
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as s:  # type: ignore[attr-defined]
            product = Product(sku="BENCH-BULK", kind="code", code_format="number", name_zh="福利券")
            s.add(product)
            await s.flush()
            batch = Batch(ref=readable_ref("B"), product_id=product.id, unit_cost=100, code_count=codes)
            s.add(batch)
            await s.flush()
            cipher = await kernel.keys.cipher(s)  # type: ignore[attr-defined]
            rows = []
            for i in range(codes):
                sealed = seal(cipher, f"BULK{i:014d}", None)
                rows.append(
                    {
                        "tenant_id": tenant_id,
                        "id": new_id(),
                        "product_id": product.id,
                        "batch_id": batch.id,
                        "digest": sealed.digest,
                        "secret": sealed.secret,
                        "last4": sealed.last4,
                        "has_pin": False,
                        "state": "available",
                        "expires_at": now + dt.timedelta(days=30 + i % 300),
                        "state_changed_at": now,
                    }
                )
            for start in range(0, len(rows), 5000):
                await s.execute(insert(Code), rows[start : start + 5000])
    await refresh_statistics(kernel.db, "codes")  # type: ignore[attr-defined]
    return "BENCH-BULK"


def recipients_csv(sku: str, n: int, round_no: int) -> bytes:
    """``n`` distinct mainland mobile numbers (a block per round), one code each."""
    out = io.StringIO()
    out.write("姓名,手机号,商品编码,数量\r\n")
    for i in range(n):
        out.write(f"员工{i},139{round_no:02d}{i:06d},{sku},1\r\n")
    return out.getvalue().encode("utf-8")


async def prepare_bulk(kernel: object, tenant_id: uuid.UUID, sku: str, n: int, round_no: int) -> uuid.UUID:
    """Upload (validate) a bulk grant of ``n`` recipients; returns its id (not timed)."""
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as s:  # type: ignore[attr-defined]
            bulk = await bulk_services.create_bulk_grant(
                s,
                kernel,  # type: ignore[arg-type]
                io.BytesIO(recipients_csv(sku, n, round_no)),
                f"round-{round_no}.csv",
                BulkGrantFields(campaign_ref=f"bench-{round_no}", channel="none"),
                max_bytes=50 * 1024 * 1024,
            )
            assert bulk.valid_rows == n, bulk.report
            return bulk.id


async def seal_audit(kernel: object, tenant_id: uuid.UUID) -> float:
    """Seconds to seal the tenant's unsealed audit events (what the scheduled seal job would do)."""
    started = time.perf_counter()
    async with kernel.db.transaction() as s:  # type: ignore[attr-defined]
        await seal_chain(s, tenant_id)
    return time.perf_counter() - started


async def run_bulk(
    kernel: object, tenant_id: uuid.UUID, bulk_id: uuid.UUID, with_seal: bool
) -> tuple[float, float, int, int]:
    """Confirm (no broker message), run the job body, with ``with_seal`` seal its audit events; returns
    (job seconds, sealing seconds, granted, failed)."""
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as s:  # type: ignore[attr-defined]
            await bulk_services.confirm_bulk_grant(s, bulk_id, enqueue=False)
        if with_seal:
            await seal_audit(kernel, tenant_id)  # whatever came before is not the job's
        started = time.perf_counter()
        outcome = await bulk_run.run_bulk_grant(kernel, bulk_id)  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
        sealing = await seal_audit(kernel, tenant_id) if with_seal else 0.0
    if outcome.status != "done":
        raise SystemExit(f"bulk grant {bulk_id} ended {outcome.status}: {outcome.errors}")
    return seconds, sealing, outcome.granted, outcome.failed


async def single_round(
    kernel: object, tenant_id: uuid.UUID, product_id: uuid.UUID, n: int, round_no: int
) -> float:
    """Grants per second of ``n`` single grants (1 code to a new phone each, no delivery), one by one."""
    with tenant_context(tenant_id):
        started = time.perf_counter()
        for i in range(n):
            async with kernel.db.transaction() as s:  # type: ignore[attr-defined]
                request = GrantRequest(
                    product_id=product_id, quantity=1, phone=f"137{round_no:02d}{i:06d}", channel="none"
                )
                await create_grant(s, kernel, request, source="api")  # type: ignore[arg-type]
        return n / (time.perf_counter() - started)


def body_template(product_id: uuid.UUID) -> str:
    """wrk's request body: 1 code to a new member (``{key}`` is unique per request), no delivery."""
    return (
        f'{{"product_id": "{product_id}", "quantity": 1, "external_id": "m-{{key}}", '
        '"channel": "none", "campaign_ref": "bench"}'
    )


async def http_round(
    base: str, token: str, product_id: uuid.UUID, args: argparse.Namespace
) -> tuple[float, int, dict[int, int]]:
    """(seconds, 2xx answers, statuses) of one HTTP load."""
    if args.loadgen == "wrk":
        result = await run_wrk(
            base,
            "/api/v1/grants",
            token,
            body_template(product_id),
            connections=args.concurrency,
            seconds=args.http_seconds,
        )
        statuses = dict(result.statuses)
        if result.socket_errors:
            statuses[0] = result.socket_errors
        return result.seconds, result.ok, statuses
    seconds, _latencies, statuses = await load(base, token, product_id, args.http_grants, args.concurrency)
    return seconds, sum(v for k, v in statuses.items() if 200 <= k < 300), statuses


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=10_000, help="rows per bulk grant")
    parser.add_argument("--rounds", type=int, default=3, help="HTTP / bulk alternations")
    parser.add_argument("--http-seconds", type=int, default=15, help="length of each HTTP load (wrk)")
    parser.add_argument("--http-grants", type=int, default=1500, help="grants per HTTP load (httpx)")
    parser.add_argument("--single", type=int, default=500, help="single grants per round (0: none)")
    parser.add_argument("--concurrency", type=int, default=50, help="HTTP connections")
    parser.add_argument("--seal", action="store_true", help="also time sealing the job's audit events")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--chunk", type=int, default=0, help="rows per chunk of the job (0: the default)")
    parser.add_argument("--loadgen", choices=["wrk", "httpx"], default="wrk" if have_wrk() else "httpx")
    parser.add_argument("--redis-url", default=REDIS_URL, help="an EMPTY Redis database")
    parser.add_argument("--admin-url", "--database-url", dest="admin_url", default=ADMIN_URL)
    args = parser.parse_args()
    if args.chunk:
        bulk_run.CHUNK_ROWS = args.chunk
    state = await redis_db_state(args.redis_url)
    if state != "empty":
        raise SystemExit(f"{args.redis_url} is {state}; the benchmark needs an empty Redis database")
    http_stock = 200 * args.http_seconds * (args.rounds + 1) if args.loadgen == "wrk" else 0
    http_stock = (http_stock or args.http_grants * (args.rounds + 1) + 400) + args.single * args.rounds
    rounds: list[tuple[float, float, float, float, dict[int, int]]] = []
    machine = machine_line()
    try:
        async with throwaway_database(args.admin_url, prefix="kaquan_bench_bulk") as db:
            with tempfile.TemporaryDirectory(prefix="kaquan-bench-") as data_dir:
                settings = bench_settings(db, data_dir, generate_master_key_spec("mk-bench"), args.redis_url)
                app = quiet_app(settings)
                kernel = app.state.kernel
                tenant_id, product_id, token = await set_up(app, http_stock)
                sku = await stock_bulk_product(kernel, tenant_id, args.recipients * args.rounds)
                bulk_ids = [
                    await prepare_bulk(kernel, tenant_id, sku, args.recipients, n) for n in range(args.rounds)
                ]
                env = settings_env(settings) | {"WEB_CONCURRENCY": str(args.workers)}
                async with uvicorn_server("core.app:create_app", env, str(ROOT)) as base:
                    if args.loadgen == "wrk":  # warm-up
                        await run_wrk(
                            base,
                            "/api/v1/grants",
                            token,
                            body_template(product_id),
                            connections=args.concurrency,
                            seconds=3,
                        )
                    for n, bulk_id in enumerate(bulk_ids):
                        h_seconds, h_ok, statuses = await http_round(base, token, product_id, args)
                        single_rate = (
                            await single_round(kernel, tenant_id, product_id, args.single, n)
                            if args.single
                            else 0.0
                        )
                        b_seconds, sealing, granted, failed = await run_bulk(
                            kernel, tenant_id, bulk_id, args.seal
                        )
                        if granted != args.recipients or failed:
                            raise SystemExit(f"round {n}: {granted} granted, {failed} failed")
                        http_rate, bulk_rate = h_ok / h_seconds, granted / b_seconds
                        sealed_rate = granted / (b_seconds + sealing)
                        rounds.append((http_rate, single_rate, bulk_rate, sealed_rate, statuses))
                        print(
                            f"round {n + 1}: HTTP {http_rate:,.0f} grants/s, single {single_rate:,.0f} grants/s, "
                            f"bulk {bulk_rate:,.0f} recipients/s ({b_seconds:.1f} s"
                            + (f", then {sealing:.1f} s sealing its audit events)" if args.seal else ")"),
                            flush=True,
                        )
                conn = await asyncpg.connect(asyncpg_dsn(db.owner_url))
                try:
                    dups = await conn.fetchval("SELECT count(*) - count(DISTINCT code_id) FROM grant_items")
                    bulk_grants = await conn.fetchval("SELECT count(*) FROM grants WHERE source = 'bulk'")
                    version = await conn.fetchval("show server_version")
                finally:
                    await conn.close()
    finally:
        await redis_flush(args.redis_url)
    ratios = [b / h for h, _, b, _, _ in rounds]
    sealed_ratios = [b / h for h, _, _, b, _ in rounds]
    single_ratios = [b / one for _, one, b, _, _ in rounds if one]
    print()
    print(f"# Bulk grants against the HTTP grant rate — {dt.date.today().isoformat()}")
    print()
    print(
        f"Machine: {machine}; PostgreSQL {version} and Redis on 127.0.0.1; service mode (Redis rate limits "
        f"and risk counters), app role with RLS. HTTP: uvicorn, {args.workers} worker processes, "
        f"{args.concurrency} connections ({args.loadgen}), {args.http_seconds} s per round. Single: "
        f"{args.single} grants one by one in the bench process. Bulk: {args.recipients:,} recipients per "
        f"round, chunks of {bulk_run.CHUNK_ROWS} rows, the job body in the bench process (as in a worker: "
        "no in-process audit sealer"
        + ("; its audit events sealed afterwards, timed apart)." if args.seal else ").")
    )
    print()
    sealed = " | bulk incl. sealing | bulk incl. sealing ÷ HTTP" if args.seal else ""
    print(
        f"| round | HTTP grants/s | single grants/s | bulk recipients/s | bulk ÷ HTTP | bulk ÷ single{sealed} | HTTP non-2xx |"
    )
    print("|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if args.seal else "") + "---|")
    for n, (h, one, b, bs, statuses) in enumerate(rounds, 1):
        others = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()) if not 200 <= k < 300) or "none"
        vs_single = f"{b / one:.2f}" if one else "—"
        extra = f" | {bs:,.0f} | {bs / h:.2f}" if args.seal else ""
        print(f"| {n} | {h:,.0f} | {one:,.0f} | {b:,.0f} | {b / h:.2f} | {vs_single}{extra} | {others} |")
    print()

    def spread(values: list[float]) -> str:
        return f"min {min(values):.2f}, median {statistics.median(values):.2f}"

    line = f"Bulk ÷ HTTP: {spread(ratios)} (aim ≥ 2)."
    if args.seal:
        line += f" Including the sealing: {spread(sealed_ratios)}."
    if single_ratios:
        line += f" Bulk ÷ single: {spread(single_ratios)}."
    print(line + f" Bulk grants made: {bulk_grants:,}; duplicate codes in grant_items: {dups}.")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
