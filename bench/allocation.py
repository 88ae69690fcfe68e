"""Allocation throughput on PostgreSQL: 50 concurrent allocators taking 10 codes each until stock runs out.

Through the real service (``core.inventory.allocation.allocate``: ORM, tenant filter, RLS as the app role,
audit chain linked at commit) versus a bare SQL ``FOR UPDATE SKIP LOCKED`` loop on a plain copy of the
table (owner, no RLS, no audit) in the same run. Prints a markdown table.

    .venv/bin/python bench/allocation.py [--codes 20000] [--workers 50] [--take 10]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from sqlalchemy import insert

from bench._pg import asyncpg_dsn, machine_line, throwaway_database
from core.catalog.models import Product
from core.db.context import tenant_context
from core.db.ids import new_id, readable_ref
from core.db.maintenance import refresh_statistics
from core.inventory.allocation import OutOfStock, allocate
from core.inventory.models import Batch, Code
from core.inventory.vault import seal
from core.kernel import Kernel
from core.settings import load_settings
from tenants.onboarding import create_tenant, ensure_default_plans
from tenants.schemas import TenantCreate


async def _stock(kernel: Kernel, codes: int) -> tuple[object, object]:
    async with kernel.db.transaction() as db:
        await ensure_default_plans(db)
        created = await create_tenant(kernel, db, TenantCreate(
            name="Bench", slug=f"bench-{os.getpid()}", owner_email="bench@example.com", plan="growth"))
    tenant_id = created.tenant.id
    now = dt.datetime.now(dt.UTC)
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            product = Product(sku="BENCH", kind="code", code_format="number_pin", name_zh="基准券")
            db.add(product)
            await db.flush()
            batch = Batch(ref=readable_ref("B"), product_id=product.id, unit_cost=100, code_count=codes)
            db.add(batch)
            await db.flush()
            cipher = await kernel.keys.cipher(db)
            rows = []
            for i in range(codes):
                s = seal(cipher, f"BENCH{i:012d}", f"{i:06d}")
                rows.append({"tenant_id": tenant_id, "id": new_id(), "product_id": product.id, "batch_id": batch.id,
                             "digest": s.digest, "secret": s.secret, "last4": s.last4, "has_pin": True,
                             "state": "available", "expires_at": now + dt.timedelta(days=1 + i % 365),
                             "state_changed_at": now})
            for start in range(0, len(rows), 5000):
                await db.execute(insert(Code), rows[start:start + 5000])
    await refresh_statistics(kernel.db, "codes")  # as the import job does after a batch
    return tenant_id, product.id


async def _service_run(kernel: Kernel, tenant_id: object, product_id: object, workers: int, take: int) -> tuple[float, int, int]:
    got: list[object] = []

    async def worker() -> None:
        with tenant_context(tenant_id):  # type: ignore[arg-type]
            while True:
                try:
                    async with kernel.db.transaction() as db:
                        a = await allocate(db, product_id, take, "bench")  # type: ignore[arg-type]
                except OutOfStock:
                    return
                got.extend(c.id for c in a.codes)

    started = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(workers)])
    return time.perf_counter() - started, len(got), len(got) - len(set(got))


async def _bare_run(owner_url: str, codes: int, workers: int, take: int, pool_size: int) -> tuple[float, int, int]:
    dsn = asyncpg_dsn(owner_url)
    conn = await asyncpg.connect(dsn)
    await conn.execute("DROP TABLE IF EXISTS bare_codes")
    await conn.execute("CREATE TABLE bare_codes (id bigint primary key, state text not null, expires_at timestamptz)")
    await conn.execute(
        "INSERT INTO bare_codes SELECT g, 'available', now() + (1 + g % 365) * interval '1 day' "
        "FROM generate_series(1, $1) g", codes)
    await conn.execute("CREATE INDEX ON bare_codes (state, expires_at)")
    await conn.close()
    pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
    sql = ("WITH picked AS (SELECT id FROM bare_codes WHERE state = 'available' ORDER BY expires_at, id "
           "LIMIT $1 FOR UPDATE SKIP LOCKED) UPDATE bare_codes b SET state = 'issued' FROM picked "
           "WHERE b.id = picked.id RETURNING b.id")
    got: list[int] = []

    async def worker() -> None:
        while True:
            async with pool.acquire() as c, c.transaction():
                rows = await c.fetch(sql, take)
            if not rows:
                return
            got.extend(r["id"] for r in rows)

    started = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(workers)])
    elapsed = time.perf_counter() - started
    await pool.close()
    return elapsed, len(got), len(got) - len(set(got))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--codes", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--take", type=int, default=10)
    args = parser.parse_args()
    key = "mk-bench:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    async with throwaway_database() as bench_db:
        settings = load_settings(env={}, database_url=bench_db.app_url, database_owner_url=bench_db.owner_url,
                                 master_key=key, log_level="WARNING")
        kernel = Kernel.create(settings)
        try:
            tenant_id, product_id = await _stock(kernel, args.codes)
            s_time, s_codes, s_dups = await _service_run(kernel, tenant_id, product_id, args.workers, args.take)
        finally:
            await kernel.close()
        pool = 30  # the app's pool: pool_size 10 + max_overflow 20
        b_time, b_codes, b_dups = await _bare_run(bench_db.owner_url, args.codes, args.workers, args.take, pool)
    s_rate, b_rate = s_codes / s_time, b_codes / b_time
    print(f"Machine: {machine_line()}")
    print(f"{args.codes:,} codes, {args.workers} concurrent allocators taking {args.take} each until out of stock\n")
    print("| path | codes | seconds | codes/s | duplicates | vs bare |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| kaquan `allocate` (app role, RLS, ORM, audit) | {s_codes:,} | {s_time:.2f} | {s_rate:,.0f} | {s_dups} "
          f"| {s_rate / b_rate:.0%} |")
    print(f"| bare SQL SKIP LOCKED loop (owner, no RLS, {pool} connections) | {b_codes:,} | {b_time:.2f} "
          f"| {b_rate:,.0f} | {b_dups} | 100% |")


if __name__ == "__main__":
    asyncio.run(main())
