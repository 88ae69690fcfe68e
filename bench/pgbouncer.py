"""kaquan through PgBouncer (transaction pooling) against kaquan on direct connections, in one run.

Run: ``.venv/bin/python bench/pgbouncer.py [--seconds 8] [--rounds 3] [--concurrencies 32,200] [--workers 2]``

A throwaway PgBouncer (Debian's ``/usr/sbin/pgbouncer``; ``--pgbouncer``) is started for the run: a temporary
configuration, its own port on 127.0.0.1, ``pool_mode = transaction``, ``--server-pool`` server connections
per database and user, trust authentication towards PostgreSQL on 127.0.0.1, and
``max_prepared_statements`` when the version has it (1.21+). Two kaquan servers (uvicorn, same workers and
pool, service mode with Redis database 9 by default, which must be empty), each for a tenant of its own:

* **direct**: the database URL points at PostgreSQL;
* **pgbouncer**: the database URL points at PgBouncer and ``KAQUAN_DB_PGBOUNCER=1`` (asyncpg prepares no
  named statements that would outlive a transaction; see ``docs/scaling.md``).

Both get the same wrk load of grants (one code to a new member each) in interleaved rounds, as in
``bench/grant_http.py --baseline``; printed: grants/s per round, the per-round ratio pgbouncer / direct with its
min and median, p50/p99, and PgBouncer's own figures (``SHOW STATS``: transactions, average transaction and
wait time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import pwd
import re
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
from _pg import ADMIN_URL, ROOT, asyncpg_dsn, machine_line, throwaway_database
from compare import Settler, add_arguments, kaquan_env, run_rounds
from compare_grant import grant_load
from fixtures import BenchTenant, duplicates, ensure_plan, fetch_token, onboard, stock_codes
from http_overhead import bench_settings, free_port, quiet_app, redis_db_state, redis_flush
from rounds import Contender, Round, summary
from sqlalchemy.engine import make_url

from core.crypto.envelope import generate_master_key_spec
from core.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379/9"
KEYS = ("direct", "pgbouncer")


def pgbouncer_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"PgBouncer (\d+)\.(\d+)(?:\.(\d+))?", out)
    if not match:
        raise SystemExit(f"cannot tell the version of {binary}: {out!r}")
    return tuple(int(x) for x in match.groups() if x is not None)


def pgbouncer_config(directory: Path, port: int, server_pool: int, version: tuple[int, ...]) -> Path:
    """A configuration for a throwaway PgBouncer on 127.0.0.1:``port`` in front of 127.0.0.1:5432."""
    (directory / "userlist.txt").write_text('"postgres" ""\n"kaquan_app" ""\n', encoding="utf-8")
    lines = [
        "[databases]",
        "* = host=127.0.0.1 port=5432",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = trust",
        f"auth_file = {directory / 'userlist.txt'}",
        "admin_users = postgres",
        "pool_mode = transaction",
        f"default_pool_size = {server_pool}",
        "max_client_conn = 5000",
        "max_db_connections = 0",
        "log_connections = 0",
        "log_disconnections = 0",
    ]
    if version >= (1, 21):
        lines.append("max_prepared_statements = 200")
    path = directory / "pgbouncer.ini"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    directory.chmod(0o755)  # read by the unprivileged user PgBouncer runs as when started by root
    for f in directory.iterdir():
        f.chmod(0o644)
    return path


@contextlib.asynccontextmanager
async def running_pgbouncer(binary: str, server_pool: int) -> AsyncIterator[tuple[int, tuple[int, ...]]]:
    """A PgBouncer of our own for the block (stopped by its pid); yields its port and version."""
    version = pgbouncer_version(binary)
    with tempfile.TemporaryDirectory(prefix="kaquan-pgbouncer-") as tmp:
        port = free_port()
        config = pgbouncer_config(Path(tmp), port, server_pool, version)
        command = [binary, str(config)]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root: it switches to this user
            command[1:1] = ["-u", "postgres" if _user_exists("postgres") else "nobody"]
        log = Path(tmp) / "pgbouncer.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(*command, stdout=out, stderr=subprocess.STDOUT)
        try:
            for _ in range(100):
                if proc.returncode is not None:
                    raise SystemExit(f"pgbouncer exited: {log.read_text(errors='replace')[-1500:]}")
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                await asyncio.sleep(0.1)
            else:
                raise SystemExit("pgbouncer did not start listening")
            yield port, version
        finally:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def show_stats(port: int) -> str:
    """PgBouncer's ``SHOW STATS`` for the bench database (psql: the admin console speaks the simple protocol)."""
    out = subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "-A",
            "-F",
            "\t",
            "-P",
            "footer=off",
            "pgbouncer",
            "-c",
            "SHOW STATS",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = out.stdout.splitlines()
    rows = [line.split("\t") for line in lines[1:] if line.startswith("kaquan_bench_pgb")]
    if not lines or not rows:
        return f"SHOW STATS gave nothing ({out.stderr.strip()[:200]})"
    stats = {k: int(v) for k, v in zip(lines[0].split("\t"), rows[0], strict=False) if v.isdigit()}
    xacts = stats.get("total_xact_count", 0) or 1
    return (
        f"{stats.get('total_xact_count', 0):,} transactions and {stats.get('total_query_count', 0):,} queries "
        f"through PgBouncer; per transaction {stats.get('total_xact_time', 0) / xacts / 1000:.1f} ms on a server "
        f"connection and {stats.get('total_wait_time', 0) / xacts / 1000:.1f} ms waiting for one (totals of the run)"
    )


def has_pgbouncer_setting() -> bool:
    return "db_pgbouncer" in {f.name for f in msgspec.structs.fields(Settings)}


async def run(args: argparse.Namespace) -> None:
    if await redis_db_state(args.redis_url) != "empty":
        raise SystemExit(f"{args.redis_url} is not an empty, reachable Redis database")
    concurrencies = [int(c) for c in args.concurrencies.split(",") if c.strip()]
    per_run = args.stock_rate * (args.seconds + args.warmup)
    print(f"# kaquan through PgBouncer against direct connections — {dt.date.today().isoformat()}")
    print()
    print(f"Machine: {machine_line()}")
    if not has_pgbouncer_setting():
        print("**This checkout has no KAQUAN_DB_PGBOUNCER setting**: the pgbouncer server runs without it.")
    pairs = [("pgbouncer", "direct")]
    try:
        async with (
            running_pgbouncer(args.pgbouncer, args.server_pool) as (port, version),
            throwaway_database(args.admin_url, prefix="kaquan_bench_pgb") as db,
        ):
            with tempfile.TemporaryDirectory(prefix="kaquan-bench-") as data_dir:
                settings = bench_settings(db, data_dir, generate_master_key_spec("mk-bench"), args.redis_url)
                owner_dsn = asyncpg_dsn(db.owner_url)
                app = quiet_app(settings)
                await ensure_plan(app)
                tenants: dict[str, BenchTenant] = {}
                for key in KEYS:
                    tenants[key] = await onboard(app, f"pgb{key}", ["grants:write"])
                    await fetch_token(app, tenants[key])
                    await stock_codes(owner_dsn, tenants[key], per_run)
                via = make_url(db.app_url).set(port=port).render_as_string(hide_password=False)
                print(
                    f"PgBouncer {'.'.join(map(str, version))} on 127.0.0.1:{port}, pool_mode transaction, "
                    f"{args.server_pool} server connections per database and user; kaquan under uvicorn, "
                    f"{args.workers} workers per server, pool {args.pool_size} + {args.max_overflow}; wrk, "
                    f"{args.seconds} s per load after {args.warmup} s, {args.rounds} rounds per concurrency."
                )
                contenders = [
                    Contender("direct", "core.app:create_app", kaquan_env(settings, args), str(ROOT)),
                    Contender(
                        "pgbouncer",
                        "core.app:create_app",
                        kaquan_env(settings, args)
                        | {"KAQUAN_DATABASE_URL": via, "KAQUAN_DB_PGBOUNCER": "true"},
                        str(ROOT),
                    ),
                ]

                settler = Settler(owner_dsn, tenants, per_run, args.seal_timeout, set(KEYS))
                rounds = await run_rounds(
                    contenders, grant_load(tenants), settler, keys=list(KEYS), db_name=db.name, table="grants",
                    unit="grants/s", pairs=pairs, concurrencies=concurrencies, args=args,
                )
                dups = {k: await duplicates(owner_dsn, t) for k, t in tenants.items()}
                stats = show_stats(port)
    finally:
        await redis_flush(args.redis_url)
    _report(rounds, pairs, dups, stats)


def _report(
    rounds: list[Round], pairs: list[tuple[str, str]], dups: dict[str, tuple[int, int]], stats: str
) -> None:
    print()
    print("\n".join(summary(rounds, list(KEYS), pairs)))
    print()
    print(f"PgBouncer: {stats}.")
    print(
        "Duplicates (codes handed out twice): "
        + ", ".join(f"{k} {d} of {n:,} items" for k, (n, d) in dups.items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=8, help="seconds per load")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pgbouncer", default="/usr/sbin/pgbouncer", help="the PgBouncer binary")
    parser.add_argument("--server-pool", type=int, default=20, help="PgBouncer's default_pool_size")
    parser.add_argument("--redis-url", default=REDIS_URL, help="an EMPTY Redis database")
    parser.add_argument("--admin-url", default=ADMIN_URL)
    add_arguments(parser)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
