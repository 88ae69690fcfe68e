"""Benchmark: split rows computed for 1,000,000 channel order lines by the engine (:mod:`core.splits.engine`)
against a plain-Python loop over the same rules (components as tuples, the arithmetic inline).

Four rules share the lines (e-commerce 15% of the sale; local life 5% of the redeemed value, whose sale rows
are the tenant's alone; social per-conversion fee, 5% referrer cash-back from the third buyer and a 10% KOL
fee; a combination with a platform order fee, bounds and the remainder to the platform). Both sides compute
each line's sale rows and the rows of the redemption of its first unit; both checksums must agree. Rounds
alternate engine / loop; the ratio is engine seconds / loop seconds.

    .venv/bin/python bench/splits.py [--lines 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.splits import engine  # noqa: E402
from core.splits.engine import LineFacts  # noqa: E402
from core.splits.terms import SplitComponent, SplitTerms  # noqa: E402

RULES = [
    SplitTerms(components=[SplitComponent(party="channel", basis="sale", bp=1500)]),
    SplitTerms(components=[SplitComponent(party="channel", basis="redeemed", bp=500)]),
    SplitTerms(components=[
        SplitComponent(party="channel", basis="conversion", fixed_fen=100),
        SplitComponent(party="referrer", basis="conversion", bp=500, min_referrals=3),
        SplitComponent(party="kol", basis="conversion", bp=1000),
    ]),
    SplitTerms(components=[
        SplitComponent(party="channel", basis="sale", bp=1000, min_fen=50, max_fen=5000),
        SplitComponent(party="platform", basis="order", fixed_fen=30, bp=33),
        SplitComponent(party="referrer", basis="sale", bp=123),
    ], remainder_to="platform"),
]


def make_lines(n: int, seed: int = 12) -> list[LineFacts]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        q = rnd.randint(1, 5)
        ref = rnd.random() < 0.4
        kol = rnd.random() < 0.2
        out.append(LineFacts(gross_fen=q * rnd.randint(100, 50_000), quantity=q, first_line=rnd.random() < 0.8,
                             referrer="r" if ref else "", kol="k" if kol else "",
                             referrer_count=rnd.randint(1, 6) if ref else 0, kol_count=rnd.randint(1, 6) if kol else 0))
    return out


def run_engine(lines: list[LineFacts]) -> tuple[int, int]:
    """(rows, checksum) with the engine."""
    rows = checksum = 0
    rules = RULES
    for i, line in enumerate(lines):
        terms = rules[i & 3]
        for r in engine.sale_rows(terms, line):
            rows += 1
            checksum += r.amount_fen * (len(r.party) + 1)
        for r in engine.redemption_rows(terms, line, 0, line.quantity):
            rows += 1
            checksum += r.amount_fen * (len(r.party) + 1)
    return rows, checksum


def _plain_rules() -> list[tuple[list[tuple[str, str, int, int, int | None, int | None, int]], str]]:
    return [([(c.party, c.basis, c.bp, c.fixed_fen, c.min_fen, c.max_fen, c.min_referrals) for c in t.components],
             t.remainder_to) for t in RULES]


def run_plain(lines: list[LineFacts]) -> tuple[int, int]:
    """(rows, checksum) with a plain loop over the same rules: the same arithmetic, no engine."""
    rows = checksum = 0
    rules = _plain_rules()
    for i, line in enumerate(lines):
        comps, remainder_to = rules[i & 3]
        g, q = line.gross_fen, line.quantity
        unit = g // q + (1 if g % q else 0)
        for at_sale, base, total in ((True, g, g), (False, unit, 0)):
            charged = exact_sum = 0
            out: list[tuple[str, int]] = []
            for party, basis, bp, fixed, lo, hi, refs in comps:
                if at_sale == (basis == "redeemed"):
                    continue
                if party == "referrer":
                    attributed, count = bool(line.referrer), line.referrer_count
                elif party == "kol":
                    attributed, count = bool(line.kol), line.kol_count
                else:
                    attributed = bool(line.referrer or line.kol)
                    count = line.referrer_count if line.referrer else line.kol_count
                if party in ("referrer", "kol") and not attributed:
                    continue
                if basis == "conversion" and (not attributed or count < refs):
                    continue
                if basis == "order" and not line.first_line:
                    continue
                exact = bp * base + fixed * 10_000
                if lo is not None and exact < lo * 10_000:
                    exact = lo * 10_000
                if hi is not None and exact > hi * 10_000:
                    exact = hi * 10_000
                amount = exact // 10_000
                charged += amount
                exact_sum += exact
                if amount:
                    out.append((party, amount))
            tenant = (total * 10_000 - exact_sum) // 10_000
            left = total - charged - tenant
            if remainder_to == "tenant" or (remainder_to == "referrer" and not line.referrer) or (
                    remainder_to == "kol" and not line.kol):
                tenant, left = tenant + left, 0
            out.append(("tenant", tenant))
            if left:
                out.append((remainder_to, left))
            if not at_sale and all(a == 0 for _, a in out):
                continue
            for party, amount in out:
                rows += 1
                checksum += amount * (len(party) + 1)
    return rows, checksum


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    t0 = time.perf_counter()
    lines = make_lines(args.lines)
    print(f"{platform.node()} · {os.cpu_count()} CPUs · Python {platform.python_version()} · load "
          f"{os.getloadavg()[0]:.1f} · {args.lines:,} lines generated in {time.perf_counter() - t0:.1f} s")
    ratios = []
    print("| round | engine s | engine rows/s | loop s | loop rows/s | engine / loop |")
    print("|---:|---:|---:|---:|---:|---:|")
    for rnd in range(1, args.rounds + 1):
        t = time.perf_counter()
        rows_e, sum_e = run_engine(lines)
        te = time.perf_counter() - t
        t = time.perf_counter()
        rows_p, sum_p = run_plain(lines)
        tp = time.perf_counter() - t
        if (rows_e, sum_e) != (rows_p, sum_p):
            raise SystemExit(f"engine and loop disagree: {(rows_e, sum_e)} != {(rows_p, sum_p)}")
        ratios.append(te / tp)
        print(f"| {rnd} | {te:.2f} | {rows_e / te:,.0f} | {tp:.2f} | {rows_p / tp:,.0f} | {te / tp:.2f} |")
    print(f"rows per round: {rows_e:,}; engine / loop: min {min(ratios):.2f}, median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
