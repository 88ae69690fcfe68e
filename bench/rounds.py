"""Interleaved rounds: several servers under the same closed-loop load, taking turns, compared by ratio.

Every contender runs as its own uvicorn server (same worker count) for the whole comparison; in each
round each contender gets a short warm-up (not counted) and then a measured load of the same length, one
contender at a time, the order rotated from round to round so a drift in the machine's load does not
always fall on the same one. Each round gives one ratio per pair; the figures are the min and the median of
those ratios.

When wrk stops, the requests it had in flight are still being served (uvicorn does not cancel a request whose
client left): with 200 clients and a slow server that is seconds of work. So after the warm-up and after the
measured load the bench waits until the server's processes are idle again (``drain``), and only then starts
the next load; after the measured load a ``settle`` step waits for the contender's after-work (kaquan's audit
sealer) and a ``refill`` tops up stock, so one contender's work never runs during another's measurement. With
a ``probe`` (``bench/cpu.py``), the CPU time of the server's processes and of the database's backends from the
start of the measured load to the end of its settle step is divided by the rows the contender wrote in that
time (``count``: answered or not), which is the CPU one request costs.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cpu import CpuUsed, Probe, wait_idle
from http_overhead import SERVER_PIDS, uvicorn_server
from wrk_load import WrkResult


@dataclass
class Contender:
    """One server: its uvicorn factory, environment and application directory, and how to load it."""

    label: str
    factory: str
    env: dict[str, str]
    app_dir: str
    key: str = ""  # short name for the columns; defaults to the label

    def __post_init__(self) -> None:
        self.key = self.key or self.label


# load(contender, base URL, connections, seconds, measured) -> the wrk result
Load = Callable[[Contender, str, int, int, bool], Awaitable[WrkResult]]
# settle(contender that just ran) -> a note for the round's table ("" for none); its after-work (e.g. the
# audit sealer catching up) is waited for here and counts towards its CPU time
Settle = Callable[[Contender], Awaitable[str]]
# refill(contender that just ran): set-up for its next load (stock), not counted
Refill = Callable[[Contender], Awaitable[None]]
# count(contender) -> the rows its requests have written so far (e.g. its tenant's grants)
Count = Callable[[Contender], Awaitable[int]]


@dataclass
class Round:
    number: int
    concurrency: int
    order: list[str]
    results: dict[str, WrkResult] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    cpu: dict[str, CpuUsed] = field(default_factory=dict)
    done: dict[str, int] = field(
        default_factory=dict
    )  # rows written from the load's start to its settle's end

    def cpu_ms(self, key: str) -> tuple[float, float]:
        """(server, PostgreSQL) CPU milliseconds per request of ``key``'s load: per row written when counted,
        else per 2xx answer."""
        if key not in self.cpu:
            return 0.0, 0.0
        return self.cpu[key].per_request_ms(self.done.get(key) or self.results[key].ok)

    def rate(self, key: str) -> float:
        return self.results[key].ok_per_second


@dataclass
class Steps:
    """What runs around each measured load (see the module docstring)."""

    load: Load
    settle: Settle
    probe: Probe | None = None
    refill: Refill | None = None
    count: Count | None = None


async def _measure(steps: Steps, c: Contender, base: str, rnd: Round, warmup: int, seconds: int) -> None:
    """One contender's turn: warm-up, drain, measured load, drain, settle (probed), refill."""
    pid = SERVER_PIDS[base]
    if warmup:
        await steps.load(c, base, rnd.concurrency, warmup, False)
        await wait_idle(pid)
    before = await steps.count(c) if steps.count else 0
    if steps.probe is not None:
        await steps.probe.start(base)
    rnd.results[c.key] = await steps.load(c, base, rnd.concurrency, seconds, True)
    drained = await wait_idle(pid)
    note = await steps.settle(c)
    if steps.probe is not None:
        rnd.cpu[c.key] = await steps.probe.stop()
    if steps.count:
        rnd.done[c.key] = await steps.count(c) - before
    rnd.notes[c.key] = "; ".join(
        x for x in (f"drained in {drained:.1f} s" if drained >= 1 else "", note) if x
    )
    if steps.refill is not None:
        await steps.refill(c)


async def interleaved(
    contenders: list[Contender],
    steps: Steps,
    *,
    concurrencies: list[int],
    rounds: int,
    seconds: int,
    warmup: int,
    on_round: Callable[[Round], None] | None = None,
) -> list[Round]:
    """Start every contender's server, then run ``rounds`` rounds per concurrency (order rotated)."""
    out: list[Round] = []
    async with contextlib.AsyncExitStack() as stack:
        bases = {}
        for c in contenders:
            bases[c.key] = await stack.enter_async_context(uvicorn_server(c.factory, c.env, c.app_dir))
        number = 0
        for concurrency in concurrencies:
            for r in range(rounds):
                number += 1
                shift = r % len(contenders)
                order = contenders[shift:] + contenders[:shift]
                rnd = Round(number, concurrency, [c.key for c in order])
                for c in order:
                    await _measure(steps, c, bases[c.key], rnd, warmup, seconds)
                out.append(rnd)
                if on_round is not None:
                    on_round(rnd)
    return out


def fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def ratio_line(rounds: list[Round], top: str, bottom: str) -> tuple[float, float]:
    """(min, median) of the per-round ratios ``top / bottom``."""
    ratios = [r.rate(top) / r.rate(bottom) for r in rounds if r.rate(bottom) > 0]
    if not ratios:
        return 0.0, 0.0
    return min(ratios), statistics.median(ratios)


def cpu_ratio(rounds: list[Round], top: str, bottom: str) -> float | None:
    """Median over rounds of ``bottom``'s CPU per request / ``top``'s (server + PostgreSQL): the same
    direction as the throughput ratio (below 1: ``top`` costs more CPU per request)."""
    ratios = []
    for r in rounds:
        a, b = sum(r.cpu_ms(top)), sum(r.cpu_ms(bottom))
        if a > 0 and b > 0:
            ratios.append(b / a)
    return statistics.median(ratios) if ratios else None


def round_row(rnd: Round, keys: list[str], pairs: list[tuple[str, str]]) -> str:
    """``| round | clients | order | rate per contender | ratios | notes |``."""
    rates = " | ".join(fmt(rnd.rate(k)) for k in keys)
    ratios = " | ".join(f"{rnd.rate(a) / rnd.rate(b):.2f}" if rnd.rate(b) else "—" for a, b in pairs)
    others = []
    for k in keys:
        res = rnd.results[k]
        bad = {s: n for s, n in res.statuses.items() if not 200 <= s < 300}
        if bad or res.socket_errors:
            others.append(
                f"{k}: {bad or ''}{' socket errors ' + str(res.socket_errors) if res.socket_errors else ''}"
            )
    notes = "; ".join(f"{k}: {v}" for k, v in rnd.notes.items() if v)
    extra = "; ".join([*others, notes] if notes else others)
    return f"| {rnd.number} | {rnd.concurrency} | {', '.join(rnd.order)} | {rates} | {ratios} | {extra} |"


def header(keys: list[str], pairs: list[tuple[str, str]], unit: str) -> list[str]:
    cols = " | ".join(f"{k} {unit}" for k in keys)
    ratio_cols = " | ".join(f"{a} / {b}" for a, b in pairs)
    n = len(keys) + len(pairs)
    return [
        f"| round | clients | order | {cols} | {ratio_cols} | non-2xx, notes |",
        "|---:|---:|---|" + "---:|" * n + "---|",
    ]


def summary(rounds: list[Round], keys: list[str], pairs: list[tuple[str, str]]) -> list[str]:
    """Per concurrency: min and median of each ratio, and the median p50/p99 of each contender."""
    lines = [
        "| clients | ratio | min | median | rounds | by CPU per request (median) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    by_conc: dict[int, list[Round]] = {}
    for r in rounds:
        by_conc.setdefault(r.concurrency, []).append(r)
    for conc, rs in by_conc.items():
        for a, b in pairs:
            lo, med = ratio_line(rs, a, b)
            by_cpu = cpu_ratio(rs, a, b)
            cpu_text = f"{by_cpu:.2f}" if by_cpu is not None else "—"
            lines.append(f"| {conc} | {a} / {b} | **{lo:.2f}** | **{med:.2f}** | {len(rs)} | {cpu_text} |")
    lines += [
        "",
        "| clients | server | rate (median) | p50 ms (median) | p99 ms (median) | 2xx total | "
        "CPU ms per request: server | PostgreSQL | both | new connections per load |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for conc, rs in by_conc.items():
        for k in keys:
            res = [r.results[k] for r in rs]
            server = statistics.median(r.cpu_ms(k)[0] for r in rs)
            database = statistics.median(r.cpu_ms(k)[1] for r in rs)
            fresh = statistics.median(r.cpu[k].new_backends if k in r.cpu else 0 for r in rs)
            lines.append(
                f"| {conc} | {k} | {fmt(statistics.median(x.ok_per_second for x in res))} | "
                f"{statistics.median(x.p50_ms for x in res):,.1f} | {statistics.median(x.p99_ms for x in res):,.1f} | "
                f"{sum(x.ok for x in res):,} | {server:.2f} | {database:.2f} | {server + database:.2f} | {fresh:,.0f} |"
            )
    return lines
