"""Importing a supplier's CSV of number+PIN codes: the whole pipeline against raw inserts of the same rows.

Run: ``.venv/bin/python bench/import_codes.py [--rows 1000000] [--sqlite-rows 1000000] [--no-sqlite]``

A CSV (``卡号,卡密,有效期``; 16-digit numbers, 10-character PINs, one expiry date) is generated once. For
PostgreSQL a throwaway database is migrated like production and the pipeline connects as the non-owner
role ``kaquan_app`` (RLS on); SQLite gets a fresh migrated file. Each pipeline run happens in a child
process so its peak RSS (``ru_maxrss``) is its own:

* validate = :func:`core.inventory.importing.services.create_import`: parse, check every row, HMAC digest,
  look the digests up against ``codes.digest`` in chunks, stage the valid rows encrypted on the import;
* import = :func:`~core.inventory.importing.services.run_import`: decrypt the staged rows, seal each code
  (AES-256-GCM + HMAC), insert them in chunks (``INSERT … SELECT FROM unnest`` on PostgreSQL,
  ``executemany`` on SQLite) with the batch and the audit event, in one transaction.

Baselines in the same run, into a plain table without RLS (same columns, primary key and unique digest
index, random bytes instead of real ciphertexts): the same ``INSERT … SELECT unnest`` in the same chunks,
and one ``COPY`` (PostgreSQL); ``executemany`` in the same chunks (SQLite). Figures are seconds, rows per
second, peak memory and the ratio of the full pipeline to each baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _pg import ADMIN_URL, ROOT, asyncpg_dsn, machine_line, run_migrations, throwaway_database

CHUNK = 5_000


# --------------------------------------------------------------------------------------------- the file


def write_csv(path: Path, rows: int) -> None:
    """``rows`` distinct number+PIN codes, written in blocks (the generator's memory is not measured)."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("卡号,卡密,有效期\r\n")
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            block = [f"{start + i:08d}{secrets.randbelow(10**8):08d},{secrets.token_hex(5)},2030-12-31\r\n" for i in range(n)]
            fh.write("".join(block))


# --------------------------------------------------------------------------------------------- child: the pipeline


async def pipeline(db_url: str, file: Path, master_key: str, data_dir: str) -> dict[str, float]:
    """Onboard a tenant and a product, then validate and import ``file``; returns timings and peak RSS."""
    from sqlalchemy import func, select

    from core.catalog.models import Product
    from core.db.context import set_tenant, tenant_context
    from core.inventory.importing import services
    from core.inventory.importing.schemas import ImportRequest
    from core.inventory.models import Code
    from core.kernel import Kernel
    from core.logging import configure_logging
    from core.settings import load_settings
    from tenants import onboarding
    from tenants.schemas import TenantCreate

    configure_logging("WARNING", json=True)
    settings = load_settings(env={}, database_url=db_url, master_key=master_key, data_dir=data_dir)
    kernel = Kernel.create(settings)
    try:
        async with kernel.db.transaction() as s:
            await onboarding.ensure_default_plans(s)
            created = await onboarding.create_tenant(
                kernel, s, TenantCreate(name="Bench", slug=f"bench-{secrets.token_hex(3)}",
                                        owner_email="owner@bench.example.com", plan="growth"),
            )
        set_tenant(None)
        with tenant_context(created.tenant.id):
            async with kernel.db.transaction() as s:
                product = Product(sku="BENCH-1", kind="code", code_format="number_pin", name_zh="基准卡")
                s.add(product)
                await s.flush()
            t0 = time.perf_counter()
            async with kernel.db.transaction() as s:
                request = services.to_request({"product_id": str(product.id), "unit_cost": 850}, ImportRequest)
                with file.open("rb") as fh:
                    imp = await services.create_import(s, kernel.keys, fh, file.name, request, max_bytes=1 << 30)
            t1 = time.perf_counter()
            async with kernel.db.transaction() as s:
                await services.confirm_import(s, imp.id, "valid_only", enqueue=False)
            t2 = time.perf_counter()
            outcome = await services.run_import(kernel.db, kernel.keys, imp.id)
            t3 = time.perf_counter()
            async with kernel.db.transaction() as s:
                stored = int(await s.scalar(select(func.count()).select_from(Code)) or 0)
        if outcome.status != "imported":
            raise SystemExit(f"import failed: {outcome.error_code} {outcome.error_en}")
    finally:
        await kernel.close()
    return {
        "rows": imp.total_rows,
        "valid": imp.valid_rows,
        "stored": stored,
        "validate_s": t1 - t0,
        "import_s": t3 - t2,
        "total_s": t3 - t0,
        "peak_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory: ``VmHWM`` (per address space, so not inherited through
    fork+exec as ``ru_maxrss`` is on Linux), else ``ru_maxrss``."""
    with contextlib.suppress(OSError):  # no /proc: fall back to ru_maxrss
        for text in Path("/proc/self/status").read_text().splitlines():
            if text.startswith("VmHWM:"):
                return int(text.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(db_url: str, file: Path, master_key: str, data_dir: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--db-url", db_url, "--file", str(file), "--master-key", master_key,
         "--data-dir", data_dir],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )
    if out.returncode != 0:
        raise SystemExit(f"child failed:\n{out.stdout}\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------- baselines


def fake_rows(n: int) -> list[tuple[uuid.UUID, str, bytes, str, bool, dt.datetime]]:
    when = dt.datetime(2030, 12, 31, 16, tzinfo=dt.UTC)
    return [(uuid.uuid4(), os.urandom(32).hex(), os.urandom(50), "1234", True, when) for _ in range(n)]


PLAIN_PG = """
CREATE TABLE bench_plain (tenant_id uuid NOT NULL, id uuid NOT NULL, digest varchar(64) NOT NULL,
  secret bytea NOT NULL, last4 varchar(4) NOT NULL, has_pin boolean NOT NULL, expires_at timestamptz,
  state varchar(20) NOT NULL DEFAULT 'available', PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, digest))
"""
UNNEST_PG = """
INSERT INTO bench_plain (tenant_id, id, digest, secret, last4, has_pin, expires_at)
SELECT $1, u.id, u.digest, u.secret, u.last4, u.has_pin, u.expires_at
FROM unnest($2::uuid[], $3::varchar[], $4::bytea[], $5::varchar[], $6::boolean[], $7::timestamptz[])
  AS u(id, digest, secret, last4, has_pin, expires_at)
"""


async def pg_baselines(owner_url: str, rows: list[tuple[uuid.UUID, str, bytes, str, bool, dt.datetime]]) -> dict[str, float]:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(owner_url))
    tenant = uuid.uuid4()
    try:
        await conn.execute(PLAIN_PG)
        t0 = time.perf_counter()
        async with conn.transaction():
            for start in range(0, len(rows), CHUNK):
                part = rows[start : start + CHUNK]
                await conn.execute(UNNEST_PG, tenant, *(list(col) for col in zip(*part, strict=True)))
        unnest_s = time.perf_counter() - t0
        await conn.execute("TRUNCATE bench_plain")
        records = [(tenant, *r) for r in rows]
        t0 = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table(
                "bench_plain", records=records,
                columns=["tenant_id", "id", "digest", "secret", "last4", "has_pin", "expires_at"],
            )
        copy_s = time.perf_counter() - t0
        version = await conn.fetchval("show server_version")
    finally:
        await conn.close()
    return {"unnest_s": unnest_s, "copy_s": copy_s, "version": version}


def sqlite_baseline(path: Path, rows: list[tuple[uuid.UUID, str, bytes, str, bool, dt.datetime]]) -> float:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE bench_plain (tenant_id CHAR(32) NOT NULL, id CHAR(32) NOT NULL, digest VARCHAR(64) NOT NULL,"
            " secret BLOB NOT NULL, last4 VARCHAR(4) NOT NULL, has_pin BOOLEAN NOT NULL, expires_at DATETIME,"
            " PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, digest))"
        )
        tenant = uuid.uuid4().hex
        params = [(tenant, r[0].hex, r[1], r[2], r[3], r[4], r[5].strftime("%Y-%m-%d %H:%M:%S.%f")) for r in rows]
        t0 = time.perf_counter()
        with conn:
            for start in range(0, len(params), CHUNK):
                conn.executemany("INSERT INTO bench_plain VALUES (?, ?, ?, ?, ?, ?, ?)", params[start : start + CHUNK])
        return time.perf_counter() - t0
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------- report


def line(name: str, r: dict[str, float], baselines: list[tuple[str, float]]) -> str:
    ratios = "; ".join(f"{label} {secs:.2f} s → ×{r['total_s'] / secs:.1f}" for label, secs in baselines)
    return (
        f"| {name} | {int(r['stored']):,} | {r['validate_s']:.1f} | {r['import_s']:.1f} | {r['total_s']:.1f} | "
        f"{r['stored'] / r['total_s']:,.0f} | {r['peak_mb']:.0f} | {ratios} |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sqlite-rows", type=int, default=None, help="default: --rows")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--master-key", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(await pipeline(args.db_url, Path(args.file), args.master_key, args.data_dir)))
        return

    from core.crypto.envelope import generate_master_key_spec

    master_key = generate_master_key_spec("mk-bench")
    machine = machine_line()  # the load average before the run
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kaquan-bench-import-") as tmp:
        tmpdir = Path(tmp)
        csv_path = tmpdir / "supplier.csv"
        t0 = time.perf_counter()
        write_csv(csv_path, args.rows)
        size_mb = csv_path.stat().st_size / 1024 / 1024
        print(f"(generated {args.rows:,} rows, {size_mb:.1f} MiB, in {time.perf_counter() - t0:.1f} s)", file=sys.stderr)
        async with throwaway_database(args.admin_url, prefix="kaquan_bench_import") as db:
            result = run_child(db.app_url, csv_path, master_key, str(tmpdir / "pg-data"))
            rows = fake_rows(args.rows)
            base = await pg_baselines(db.owner_url, rows)
        lines.append(line("PostgreSQL", result, [("raw unnest INSERT", base["unnest_s"]), ("raw COPY", base["copy_s"])]))
        sqlite_note = ""
        if not args.no_sqlite:
            n = args.sqlite_rows or args.rows
            sqlite_csv = csv_path
            if n != args.rows:
                sqlite_csv = tmpdir / "supplier-sqlite.csv"
                write_csv(sqlite_csv, n)
            data_dir = tmpdir / "sqlite-data"
            data_dir.mkdir()
            url = f"sqlite+aiosqlite:///{data_dir / 'kaquan.db'}"
            await asyncio.to_thread(run_migrations, url, url)
            result = run_child(url, sqlite_csv, master_key, str(data_dir))
            secs = sqlite_baseline(tmpdir / "plain.db", rows[:n])
            lines.append(line("SQLite (WAL)", result, [("raw executemany", secs)]))
            sqlite_note = f"; SQLite {__import__('sqlite3').sqlite_version}"
    print(f"# Import — {dt.date.today().isoformat()}")
    print()
    print(f"Machine: {machine}; PostgreSQL {base['version']} on 127.0.0.1{sqlite_note}.")
    print(f"CSV: {args.rows:,} number+PIN rows with a header and an expiry column, {size_mb:.1f} MiB, UTF-8.")
    print()
    print("| database | codes stored | validate (s) | import job (s) | total (s) | codes/s | peak RSS (MB) "
          "| baseline, same rows, plain table → pipeline ÷ baseline |")
    print("|---|---|---|---|---|---|---|---|")
    for text in lines:
        print(text)


if __name__ == "__main__":
    asyncio.run(main())
