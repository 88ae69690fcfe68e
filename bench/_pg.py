"""Shared helpers for the benchmarks: a throwaway PostgreSQL database migrated like production.

The database is created through the admin URL (``postgres`` superuser on 127.0.0.1), migrated with
``alembic upgrade head`` as the owner, which also provisions the non-owner app role ``kaquan_app``,
and dropped at the end. Nothing here ever talks to a host other than 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as `.venv/bin/python bench/<name>.py` without an install
    sys.path.insert(0, str(ROOT))

from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from core.db.migrations import upgrade_head  # noqa: E402

ADMIN_URL = os.environ.get("KAQUAN_BENCH_ADMIN_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
APP_ROLE = "kaquan_app"


@dataclass(frozen=True)
class BenchDatabase:
    """URLs of a throwaway database: ``owner_url`` (superuser/owner) and ``app_url`` (RLS applies)."""

    name: str
    owner_url: str
    app_url: str


def _check_local(url: str) -> None:
    host = make_url(url).host or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"benchmarks only run against 127.0.0.1, not {host!r}")


def run_migrations(owner_url: str, app_url: str) -> None:
    """``alembic upgrade head`` as the owner; provisions the app role from ``app_url`` (as tests do)."""
    upgrade_head(owner_url, app_url)


@asynccontextmanager
async def throwaway_database(
    admin_url: str = ADMIN_URL, prefix: str = "kaquan_bench"
) -> AsyncIterator[BenchDatabase]:
    """Create, migrate (in a thread: alembic runs its own event loop) and finally drop a database."""
    _check_local(admin_url)
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        await engine.dispose()
    base = make_url(admin_url)
    owner = base.set(database=name).render_as_string(hide_password=False)
    app = base.set(database=name, username=APP_ROLE, password=None).render_as_string(hide_password=False)
    try:
        await asyncio.to_thread(run_migrations, owner, app)
        yield BenchDatabase(name, owner, app)
    finally:
        engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await engine.dispose()


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """The plain ``postgresql://`` DSN asyncpg understands, from a SQLAlchemy URL."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


def machine_line() -> str:
    """One line describing the machine: CPUs, CPU model, memory, Python, current load."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):  # not Linux, or no /proc: the figure is left out
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):  # no `free` command: the figure is left out
        out = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout.splitlines()
        mem = out[1].split()[1] if len(out) > 1 else ""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({model}), {mem} RAM, Python {platform.python_version()}, "
        f"load average at start {load} (shared machine)"
    )
