"""CPU time spent on a load: the server's processes and the PostgreSQL backends of the bench's database.

On a shared machine, throughput moves with the neighbours' load; CPU time per request moves much less, so the
comparisons print it next to the rates. Read from ``/proc`` (Linux): ``utime + stime`` of the uvicorn process
and all its descendants (its workers), and of every backend connected to the database (pids from
``pg_stat_activity``), before and after the load. A backend that ends during the load is not counted (the
pools keep theirs open under steady load, so little is missed); one that starts during it counts whole.
"""

from __future__ import annotations

import os
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
class CpuSample:
    server: float
    backends: dict[int, float]


@dataclass
class CpuUsed:
    """CPU seconds a load cost: the server's processes and the database's backends."""

    server: float
    database: float

    def per_request_ms(self, requests: int) -> tuple[float, float]:
        return (self.server / requests * 1000, self.database / requests * 1000) if requests else (0.0, 0.0)


async def sample(conn: Any, database: str, server_pid: int) -> CpuSample:
    return CpuSample(tree_cpu(server_pid), await backends_cpu(conn, database))


def used(before: CpuSample, after: CpuSample) -> CpuUsed:
    database = sum(cpu - before.backends.get(pid, 0.0) for pid, cpu in after.backends.items())
    return CpuUsed(after.server - before.server, database)


class Probe:
    """Samples a server (by its base URL, ``http_overhead.SERVER_PIDS``) and the database's backends."""

    def __init__(self, owner_dsn: str, database: str) -> None:
        self.owner_dsn, self.database = owner_dsn, database
        self.conn: Any = None

    async def sample(self, base: str) -> CpuSample:
        import asyncpg
        from http_overhead import SERVER_PIDS

        if self.conn is None:
            self.conn = await asyncpg.connect(self.owner_dsn)
        return await sample(self.conn, self.database, SERVER_PIDS[base])

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
            self.conn = None
