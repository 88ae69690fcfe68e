"""Property tests of the split engine: every basis and combination, rounding to the fen, min/max bounds,
remainder_to, and any sequence of redemptions, rollbacks and partial refunds ending in a full refund."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.splits.engine import (
    NET,
    ROUNDING,
    LineFacts,
    Row,
    charge,
    redemption_rows,
    refund_rows,
    rollback_rows,
    sale_rows,
    totals,
    unit_value,
)
from core.splits.terms import BASES, SplitComponent, SplitTerms

PARTY = st.sampled_from(["channel", "platform", "referrer", "kol"])
BASIS = st.sampled_from(list(BASES))


@st.composite
def components(draw: st.DrawFn) -> SplitComponent:
    lo = draw(st.none() | st.integers(0, 5_000))
    hi = draw(st.none() | st.integers(lo or 0, 20_000))
    return SplitComponent(
        party=draw(PARTY), basis=draw(BASIS), bp=draw(st.integers(0, 10_000)),
        fixed_fen=draw(st.integers(0, 500)), min_fen=lo, max_fen=hi, min_referrals=draw(st.integers(0, 4)),
    )


TERMS = st.builds(
    SplitTerms,
    components=st.lists(components(), max_size=6),
    remainder_to=st.sampled_from(["tenant", "channel", "platform", "referrer", "kol"]),
)


@st.composite
def facts(draw: st.DrawFn) -> LineFacts:
    quantity = draw(st.integers(1, 12))
    per_unit = draw(st.booleans())
    gross = quantity * draw(st.integers(0, 100_000)) if per_unit else draw(st.integers(0, 10**7))
    return LineFacts(
        gross_fen=gross, quantity=quantity, first_line=draw(st.booleans()),
        referrer=draw(st.sampled_from(["", "ref-1"])), kol=draw(st.sampled_from(["", "kol-9"])),
        referrer_count=draw(st.integers(0, 5)), kol_count=draw(st.integers(0, 5)),
    )


def _bucket(rows: list[Row]) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for r in rows:
        out[(r.component, r.party)] += r.amount_fen
    return out


@settings(max_examples=400, deadline=None)
@given(TERMS, facts())
def test_sale_rows_add_up_to_the_gross(terms: SplitTerms, line: LineFacts) -> None:
    rows = sale_rows(terms, line)
    assert sum(r.amount_fen for r in rows) == line.gross_fen
    assert sum(1 for r in rows if r.component == NET) == 1
    keys = [(r.component, r.party) for r in rows]
    assert len(keys) == len(set(keys))
    assert all(r.amount_fen > 0 for r in rows if r.component != NET)


@settings(max_examples=400, deadline=None)
@given(TERMS, facts())
def test_rounding_leftover_is_less_than_one_fen_per_row(terms: SplitTerms, line: LineFacts) -> None:
    rows = sale_rows(terms, line)
    left = [r for r in rows if r.component == ROUNDING]
    charged = sum(1 for r in rows if r.component not in (NET, ROUNDING))
    for r in left:
        assert r.party == terms.remainder_to and 0 < r.amount_fen <= charged + 1


@settings(max_examples=300, deadline=None)
@given(components(), st.integers(0, 10**8))
def test_min_and_max_bound_every_charge(component: SplitComponent, base: int) -> None:
    amount, exact = charge(component, base)
    if component.min_fen is not None:
        assert amount >= component.min_fen
    if component.max_fen is not None:
        assert amount <= component.max_fen
    assert amount == exact // 10_000
    unbounded = (component.bp * base) // 10_000 + component.fixed_fen
    if (component.min_fen is None or unbounded >= component.min_fen) and (
            component.max_fen is None or unbounded <= component.max_fen):
        assert amount == unbounded


@settings(max_examples=300, deadline=None)
@given(components(), facts())
def test_the_rows_charge_what_charge_says(component: SplitComponent, line: LineFacts) -> None:
    """The engine's rows apply the bounds exactly as :func:`charge` (a sale-side and a redemption-side
    component for the channel, always attributed when the order has a sharer)."""
    for basis in ("sale", "redeemed"):
        c = SplitComponent(party="channel", basis=basis, bp=component.bp, fixed_fen=component.fixed_fen,  # type: ignore[arg-type]  # literal
                           min_fen=component.min_fen, max_fen=component.max_fen)
        terms = SplitTerms(components=[c])
        rows = sale_rows(terms, line) if basis == "sale" else redemption_rows(terms, line, 0, line.quantity)
        base = line.gross_fen if basis == "sale" else unit_value(line.gross_fen, line.quantity, 0)
        assert totals(rows).get("channel", 0) == charge(c, base)[0]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**7), st.integers(1, 50))
def test_unit_values_add_up_to_the_gross(gross: int, units: int) -> None:
    values = [unit_value(gross, units, i) for i in range(units)]
    assert sum(values) == gross and max(values) - min(values) <= 1
    assert values == sorted(values, reverse=True)


@settings(max_examples=300, deadline=None)
@given(TERMS, facts(), st.data())
def test_redemption_rows_net_to_zero_and_rollback_reverses(terms: SplitTerms, line: LineFacts,
                                                           data: st.DataObject) -> None:
    index = data.draw(st.integers(0, line.quantity - 1))
    rows = redemption_rows(terms, line, index, line.quantity)
    assert sum(r.amount_fen for r in rows) == 0
    if not any(c.basis == "redeemed" for c in terms.components):
        assert rows == []
    charged = [r for r in rows if r.component not in (NET, ROUNDING)]
    assert all(r.amount_fen > 0 and r.component.endswith(":redeemed") for r in charged)
    back = rollback_rows(rows)
    assert [(r.component, r.party, -r.amount_fen) for r in back] == [(r.component, r.party, r.amount_fen) for r in rows]
    both = _bucket(rows)
    both.update(_bucket(back))
    assert all(v == 0 for v in both.values())


@settings(max_examples=400, deadline=None)
@given(TERMS, facts(), st.data())
def test_any_sequence_then_full_refund_returns_every_party_to_zero(
    terms: SplitTerms, line: LineFacts, data: st.DataObject
) -> None:
    """Redeem, roll back and refund in any order (a redeemed unit is never refunded, as in the channel
    orders); the line's rows always add up to the gross less the refunded gross; then roll back what is
    redeemed and refund the rest: every party of the line is at zero."""
    q = line.quantity
    ledger: list[Row] = list(sale_rows(terms, line))
    sale = list(ledger)
    redeemed: dict[int, list[Row]] = {}
    refunded = 0
    open_units = list(range(q))
    for _ in range(data.draw(st.integers(0, 12))):
        action = data.draw(st.sampled_from(["redeem", "rollback", "refund"]))
        if action == "redeem" and open_units:
            unit = data.draw(st.sampled_from(open_units))
            open_units.remove(unit)
            redeemed[unit] = redemption_rows(terms, line, unit, q)
            ledger += redeemed[unit]
        elif action == "rollback" and redeemed:
            unit = data.draw(st.sampled_from(sorted(redeemed)))
            ledger += rollback_rows(redeemed.pop(unit))
            open_units.append(unit)
        elif action == "refund" and len(open_units) > 0:
            k = data.draw(st.integers(1, len(open_units)))
            ledger += refund_rows(sale, q, refunded, k)
            refunded += k
            open_units = open_units[k:]
        assert sum(r.amount_fen for r in ledger) == line.gross_fen - line.gross_fen * refunded // q
    for unit in sorted(redeemed):
        ledger += rollback_rows(redeemed[unit])
    ledger += refund_rows(sale, q, refunded, q - refunded)
    assert all(v == 0 for v in totals(ledger).values())
    assert all(v == 0 for v in _bucket(ledger).values())


@settings(max_examples=300, deadline=None)
@given(TERMS, facts(), st.data())
def test_partial_refunds_reverse_a_cumulative_floor(terms: SplitTerms, line: LineFacts, data: st.DataObject) -> None:
    q = line.quantity
    sale = sale_rows(terms, line)
    steps = data.draw(st.lists(st.integers(1, q), max_size=q))
    done = 0
    reversed_so_far: Counter[tuple[str, str]] = Counter()
    for k in steps:
        k = min(k, q - done)
        if k == 0:
            break
        for r in refund_rows(sale, q, done, k):
            reversed_so_far[(r.component, r.party)] -= r.amount_fen
        done += k
        for r in sale:
            if r.component != NET:
                assert reversed_so_far[(r.component, r.party)] == r.amount_fen * done // q
        assert sum(reversed_so_far.values()) == line.gross_fen * done // q


def test_each_basis_by_hand() -> None:
    terms = SplitTerms(components=[
        SplitComponent(party="channel", basis="sale", bp=1500, label="电商 15%"),
        SplitComponent(party="channel", basis="redeemed", bp=500),
        SplitComponent(party="referrer", basis="conversion", bp=500, min_referrals=3),
        SplitComponent(party="kol", basis="conversion", fixed_fen=300),
        SplitComponent(party="platform", basis="order", fixed_fen=100, max_fen=100),
    ])
    line = LineFacts(gross_fen=2999, quantity=3, first_line=True, referrer="r", kol="k",
                     referrer_count=3, kol_count=1)
    rows = {(r.component, r.party): r.amount_fen for r in sale_rows(terms, line)}
    # 15% of 2999 = 449.85 → 449; 5% = 149.95 → 149; KOL 300; platform 100; tenant 2999 − 998 − 0.8 → 2001
    assert rows == {("0:sale", "channel"): 449, ("2:conversion", "referrer"): 149, ("3:conversion", "kol"): 300,
                    ("4:order", "platform"): 100, (NET, "tenant"): 2001}
    # the referrer has brought two buyers only: no cash-back; not the first line: no order fee
    rows2 = totals(sale_rows(terms, LineFacts(gross_fen=2999, quantity=3, first_line=False, referrer="r",
                                              referrer_count=2)))
    assert rows2 == {"channel": 449, "tenant": 2550}
    # unit values 1000, 1000, 999: 5% of the first is 50
    assert totals(redemption_rows(terms, line, 0, 3)) == {"channel": 50, "tenant": -50}
    assert totals(redemption_rows(terms, line, 2, 3)) == {"channel": 49, "tenant": -49}


def test_remainder_goes_to_the_named_party() -> None:
    terms = SplitTerms(components=[SplitComponent(party="channel", basis="sale", bp=3333),
                                   SplitComponent(party="platform", basis="sale", bp=3333)],
                       remainder_to="platform")
    rows = {(r.component, r.party): r.amount_fen for r in sale_rows(terms, LineFacts(gross_fen=100, quantity=1))}
    # 33.33 + 33.33 → 33 + 33; the tenant's 33.34 → 33; 1 fen left over → platform
    assert rows == {("0:sale", "channel"): 33, ("1:sale", "platform"): 33, (NET, "tenant"): 33,
                    (ROUNDING, "platform"): 1}


def test_bad_refund_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        refund_rows([], 2, 1, 2)
    with pytest.raises(ValueError):
        unit_value(100, 2, 2)
