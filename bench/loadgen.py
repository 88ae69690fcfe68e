"""An open-loop load generator, run as its own process: requests leave on a fixed schedule, answered or not.

``.venv/bin/python bench/loadgen.py SPEC.json`` prints one line of JSON with the results. Request *i* is due
at ``start + i / rate`` and is sent then whatever the earlier ones are doing (a closed-loop generator such as
wrk waits for an answer before sending the next request, so a slow server slows the load down and its stalls
never show: coordinated omission). Each latency counts from the request's *scheduled* moment, so time a
request spent waiting for a free connection in the generator counts too. ``lag`` is how late the generator
itself sent requests (its own CPU starvation): large lag means the figures describe the generator, not the
server.

The spec (JSON): ``url`` (``http://127.0.0.1:port``), ``path``, ``headers``, ``rate`` (requests/s),
``seconds``, ``warmup`` (seconds at the same rate first, not counted), ``connections`` (at most), and the
bodies: ``{"kind": "grant", "template": "...{key}..."}`` (``{key}`` a fresh key per request, also sent as
``Idempotency-Key``) or ``{"kind": "cards", "file": "..."}`` (a ``number pin`` line per request, redeemed at
store ``S<i % 50>`` and terminal ``T<i % 7>``). Requests go over keep-alive HTTP/1.1 connections
(``bench/raw_http.py``: a fraction of httpx's CPU).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

from raw_http import RawPool


def bodies(spec: dict[str, Any]) -> Iterator[tuple[dict[str, str], bytes]]:
    """(extra headers, body) of each request, in order."""
    source = spec["bodies"]
    if source["kind"] == "grant":
        run = uuid.uuid4().hex[:10]
        n = 0
        while True:
            n += 1
            key = f"{run}-{n}"
            yield {"Idempotency-Key": key}, source["template"].replace("{key}", key).encode()
    elif source["kind"] == "cards":
        with open(source["file"], encoding="ascii") as f:
            for i, line in enumerate(f):
                number, pin = line.split()
                body = {"code": number, "pin": pin, "store": f"S{i % 50:02d}", "terminal": f"T{i % 7}"}
                yield {}, json.dumps(body).encode()
    else:
        raise SystemExit(f"unknown bodies kind {source['kind']!r}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)] * 1000 if ordered else 0.0


async def schedule(
    pool: RawPool, spec: dict[str, Any], requests: Iterator[tuple[dict[str, str], bytes]], seconds: float
) -> dict[str, Any]:
    """One open-loop run of ``seconds`` at ``spec["rate"]``; the results as a dict."""
    rate, path = float(spec["rate"]), spec["path"]
    headers = {"Content-Type": "application/json", **spec.get("headers", {})}
    latencies: list[float] = []
    lags: list[float] = []
    statuses: Counter[int] = Counter()

    async def one(extra: dict[str, str], body: bytes, due: float) -> None:
        lags.append(time.perf_counter() - due)
        try:
            status, _ = await pool.post(path, headers | extra, body)
        except (OSError, ValueError, asyncio.IncompleteReadError):
            status = 0
        latencies.append(time.perf_counter() - due)
        statuses[status] += 1

    total = int(rate * seconds)
    tasks = []
    start = time.perf_counter() + 0.05
    for n in range(total):
        try:
            extra, body = next(requests)
        except StopIteration:
            break
        due = start + n / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(extra, body, due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return {
        "sent": len(tasks),
        "seconds": elapsed,
        "statuses": dict(statuses),
        "p50_ms": percentile(latencies, 0.50),
        "p90_ms": percentile(latencies, 0.90),
        "p95_ms": percentile(latencies, 0.95),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": percentile(latencies, 1.0),
        "lag_p99_ms": percentile(lags, 0.99),
        "lag_max_ms": percentile(lags, 1.0),
    }


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    pool = RawPool(spec["url"], int(spec.get("connections", 400)))
    requests = bodies(spec)
    try:
        if spec.get("warmup"):
            await schedule(pool, spec, requests, float(spec["warmup"]))
        return await schedule(pool, spec, requests, float(spec["seconds"]))
    finally:
        await pool.close()


def run() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    try:  # uvloop: less of the generator's CPU per request
        import uvloop
    except ImportError:
        print(json.dumps(asyncio.run(main(spec))))
    else:
        print(json.dumps(uvloop.run(main(spec))))


if __name__ == "__main__":
    run()
