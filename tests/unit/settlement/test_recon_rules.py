"""Pure parts of reconciliation: the rule snapshot's commission and what ``accept_theirs`` moves."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ValidationFailed
from core.settlement.models import ReconItem
from core.settlement.reconcile import check_period, snapshot_commission
from core.settlement.resolutions import theirs_deltas


def test_legacy_and_component_rules() -> None:
    assert snapshot_commission({"channel_bp": 1500, "platform_bp": 200}, 1999, first_line=True, attributed=False) == 299
    rule = {"components": [
        {"party": "channel", "basis": "sale", "bp": 1000, "min_fen": 50},
        {"party": "channel", "basis": "order", "fixed_fen": 30},
        {"party": "channel", "basis": "conversion", "bp": 500, "max_fen": 40},
        {"party": "channel", "basis": "conversion", "bp": 500, "min_referrals": 3},
        {"party": "channel", "basis": "redeemed", "bp": 500},
        {"party": "platform", "basis": "sale", "bp": 800},
    ]}
    assert snapshot_commission(rule, 1000, first_line=True, attributed=True) == 100 + 30 + 40
    assert snapshot_commission(rule, 1000, first_line=False, attributed=False) == 100
    assert snapshot_commission(rule, 100, first_line=False, attributed=False) == 50  # the minimum
    assert snapshot_commission({}, 1000, first_line=True, attributed=False) is None
    assert snapshot_commission({"components": [{"party": "nobody"}]}, 1000, first_line=True, attributed=False) is None
    assert snapshot_commission({"channel_bp": True}, 1000, first_line=True, attributed=False) is None


@pytest.mark.parametrize("period", ["2026-00", "2026-13", "26-01", "2026-1", "", "2026-01-01"])
def test_bad_periods_are_refused(period: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        check_period(period)
    assert err.value.code == "period_invalid"


def _item(kind: str, klass: str, theirs: int | None, ours: int | None, tc: int | None, oc: int | None) -> ReconItem:
    return ReconItem(id=uuid.uuid4(), kind=kind, klass=klass, their_amount_fen=theirs, our_amount_fen=ours,
                     their_commission_fen=tc, our_commission_fen=oc)


amounts = st.integers(min_value=0, max_value=10**9)


@given(theirs=amounts, ours=amounts, tc=amounts, oc=amounts)
def test_accept_theirs_on_a_sale_moves_exactly_the_gross_difference(theirs: int, ours: int, tc: int, oc: int) -> None:
    """The rows follow their figures: the channel's share moves by the commission difference and the line's
    rows together by the gross difference (to the fen)."""
    deltas = theirs_deltas(_item("sale", "amount_mismatch", theirs, ours, tc, oc))
    assert deltas["channel"] == tc - oc
    assert sum(deltas.values()) == theirs - ours


@given(theirs=amounts, tc=amounts)
def test_a_line_we_do_not_have_is_taken_whole(theirs: int, tc: int) -> None:
    for klass in ("missing_ours", "duplicate"):
        deltas = theirs_deltas(_item("sale", klass, theirs, None, tc, None))
        assert deltas == {"channel": tc, "tenant": theirs - tc}


@given(theirs=amounts, ours=amounts)
def test_refunds_and_charges(theirs: int, ours: int) -> None:
    assert theirs_deltas(_item("refund", "amount_mismatch", theirs, ours, None, None)) == {"tenant": ours - theirs}
    for kind in ("commission", "adjustment"):
        deltas = theirs_deltas(_item(kind, "amount_mismatch", theirs, ours, None, None))
        assert deltas == {"channel": theirs - ours, "tenant": ours - theirs} and sum(deltas.values()) == 0
