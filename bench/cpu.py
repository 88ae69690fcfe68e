"""CPU time spent on a load: the server's processes and the PostgreSQL backends of the bench's database.

On a shared machine, throughput moves with the neighbours' load; CPU time per request moves much less, so the
comparisons print it next to the rates. Read from ``/proc`` (Linux): ``utime + stime`` of the uvicorn process
and all its descendants (its workers), and of every backend connected to the database (pids from
``pg_stat_activity``, polled during the load so that a backend that ends before the load does still counts up
to its last poll; one that starts during it counts whole).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and its descendants now."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            parents[int(entry.name)], cpu[int(entry.name)] = st
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


async def wait_idle(pid: int, busy: float = 0.05, window: float = 0.5, limit: float = 120.0) -> float:
    """Wait until the process tree of ``pid`` uses less than ``busy`` of a CPU over ``window`` seconds (the
    requests a load generator left in flight are served); returns the seconds waited (at most ``limit``)."""
    started = time.perf_counter()
    last = tree_cpu(pid)
    while time.perf_counter() - started < limit:
        await asyncio.sleep(window)
        now = tree_cpu(pid)
        if now - last < busy * window:
            break
        last = now
    return time.perf_counter() - started - window


async def backends_cpu(conn: Any, database: str) -> dict[int, float]:
    """CPU seconds of each backend connected to ``database`` now (``conn`` may be any superuser connection)."""
    pids = [
        r["pid"] for r in await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
    ]
    out = {}
    for pid in pids:
        if (st := _stat(pid)) is not None:
            out[pid] = st[1]
    return out


@dataclass
class CpuUsed:
    """What a load cost: CPU seconds of the server's processes and of the database's backends, and how many
    backends were started during it (new connections: each costs a fork and cold caches in PostgreSQL)."""

    server: float
    database: float
    new_backends: int = 0

    def per_request_ms(self, requests: int) -> tuple[float, float]:
        return (self.server / requests * 1000, self.database / requests * 1000) if requests else (0.0, 0.0)


class Probe:
    """CPU time of a server (by its base URL, ``http_overhead.SERVER_PIDS``) and of the database's backends
    between :meth:`start` and :meth:`stop`. The backends are polled every ``interval`` seconds meanwhile, so
    one that ends before :meth:`stop` still counts (up to its last poll)."""

    def __init__(self, owner_dsn: str, database: str, interval: float = 0.25) -> None:
        self.owner_dsn, self.database, self.interval = owner_dsn, database, interval
        self.conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self._server_pid = 0
        self._server_start = 0.0
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}

    async def start(self, base: str) -> None:
        import asyncpg
        from http_overhead import SERVER_PIDS

        if self.conn is None:
            self.conn = await asyncpg.connect(self.owner_dsn)
        self._server_pid = SERVER_PIDS[base]
        self._server_start = tree_cpu(self._server_pid)
        self._first = await backends_cpu(self.conn, self.database)
        self._last = dict(self._first)
        self._task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self._last |= await backends_cpu(self.conn, self.database)

    async def stop(self) -> CpuUsed:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._last |= await backends_cpu(self.conn, self.database)
        database = sum(cpu - self._first.get(pid, 0.0) for pid, cpu in self._last.items())
        new = sum(1 for pid in self._last if pid not in self._first)
        return CpuUsed(tree_cpu(self._server_pid) - self._server_start, database, new)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
            self.conn = None
