"""Interleaved rounds: several servers under the same closed-loop load, taking turns, compared by ratio.

Every contender runs as its own uvicorn server (same worker count) for the whole comparison; in each
round each contender gets a short warm-up (not counted) and then a measured load of the same length, one
contender at a time, the order rotated from round to round so a drift in the machine's load does not
always fall on the same one. Between two measured loads a ``settle`` step runs (e.g. wait for kaquan's
audit sealer to catch up, top up stock), so one contender's after-work does not run during another's
measurement. Each round gives one ratio per pair; the figures are the min and the median of those ratios.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cpu import CpuUsed, Probe
from http_overhead import uvicorn_server
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


@dataclass
class Round:
    number: int
    concurrency: int
    order: list[str]
    results: dict[str, WrkResult] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    cpu: dict[str, CpuUsed] = field(default_factory=dict)

    def cpu_ms(self, key: str) -> tuple[float, float]:
        """(server, PostgreSQL) CPU milliseconds per 2xx answer of ``key``'s load."""
        return self.cpu[key].per_request_ms(self.results[key].ok) if key in self.cpu else (0.0, 0.0)

    def rate(self, key: str) -> float:
        return self.results[key].ok_per_second


async def interleaved(
    contenders: list[Contender],
    load: Load,
    settle: Settle,
    *,
    concurrencies: list[int],
    rounds: int,
    seconds: int,
    warmup: int,
    on_round: Callable[[Round], None] | None = None,
    probe: Probe | None = None,
    refill: Refill | None = None,
) -> list[Round]:
    """Start every contender's server, then run ``rounds`` rounds per concurrency (order rotated); with a
    ``probe``, the CPU time of each measured load too."""
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
                    if warmup:
                        await load(c, bases[c.key], concurrency, warmup, False)
                    if probe is not None:
                        await probe.start(bases[c.key])
                    rnd.results[c.key] = await load(c, bases[c.key], concurrency, seconds, True)
                    rnd.notes[c.key] = await settle(c)
                    if probe is not None:
                        rnd.cpu[c.key] = await probe.stop()
                    if refill is not None:
                        await refill(c)
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
