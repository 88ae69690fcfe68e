"""Drive a server with wrk (Debian's ``wrk``): a C load generator that leaves the CPU to the server.

The httpx load generator of the other benchmarks costs about as much CPU per request as a light request
costs the server, on the same two cores; wrk costs a few percent. ``run_wrk`` runs one closed-loop load
(``connections`` clients, each sending its next request when the last answer arrives) for ``seconds``
with ``bench/wrk/post_unique.lua`` and returns what the script reports.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "wrk" / "post_unique.lua"
CODES_SCRIPT = Path(__file__).resolve().parent / "wrk" / "post_codes.lua"


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    statuses: dict[int, int]
    exhausted: int = 0  # post_codes.lua: requests sent after a thread ran out of codes

    @property
    def ok(self) -> int:
        return sum(v for k, v in self.statuses.items() if 200 <= k < 300)

    @property
    def ok_per_second(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


async def run_wrk(
    base: str, path: str, token: str, body_template: str, *, connections: int, seconds: int, threads: int = 2
) -> WrkResult:
    """POST ``body_template`` (``{key}`` → a unique key, also the ``Idempotency-Key``) to ``base + path``."""
    env = {
        "KAQUAN_PATH": path,
        "KAQUAN_TOKEN": token,
        "KAQUAN_RUN": uuid.uuid4().hex[:10],
        "KAQUAN_BODY": body_template,
    }
    return await _wrk(base, SCRIPT, env, connections=connections, seconds=seconds, threads=threads)


async def run_wrk_codes(
    base: str, path: str, token: str, codes_file: str, *, connections: int, seconds: int, threads: int = 2
) -> WrkResult:
    """POST one redemption per request to ``base + path``, each of a different ``number pin`` line of
    ``codes_file`` (``bench/wrk/post_codes.lua``; no Idempotency-Key)."""
    env = {"KAQUAN_PATH": path, "KAQUAN_TOKEN": token, "KAQUAN_CODES": codes_file, "KAQUAN_THREADS": str(threads)}
    return await _wrk(base, CODES_SCRIPT, env, connections=connections, seconds=seconds, threads=threads)


async def _wrk(
    base: str, script: Path, env_vars: dict[str, str], *, connections: int, seconds: int, threads: int
) -> WrkResult:
    env = {**os.environ, **env_vars}
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        base,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    line = next((ln for ln in out.decode().splitlines() if ln.startswith("KAQUAN_RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({proc.returncode}): {out.decode()[-1500:]} {err.decode()[-1500:]}")
    raw = json.loads(line.removeprefix("KAQUAN_RESULT "))
    return WrkResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p95_ms=raw["p95_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        socket_errors=raw["socket_errors"],
        statuses={int(k): v for k, v in raw["statuses"].items()},
        exhausted=raw.get("exhausted", 0),
    )


async def run_wrk_get(base: str, path: str, *, connections: int, seconds: int, threads: int = 2) -> float:
    """Requests per second of plain GETs to ``base + path`` (the ceiling runs: no script, no checks)."""
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        base + path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    line = next((ln for ln in out.decode().splitlines() if ln.startswith("Requests/sec:")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({proc.returncode}): {out.decode()[-1500:]} {err.decode()[-1500:]}")
    return float(line.split(":", 1)[1])
