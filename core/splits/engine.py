"""The split engine (pure, no database): the ledger rows each event of a channel order line produces.

Events and their rows (see docs/settlement.md, "Split rules and the split ledger"):

- :func:`sale_rows`: the components charged when the order is taken (``sale``, ``conversion``, ``order``),
  and the tenant's net; they add up to the line's gross exactly.
- :func:`redemption_rows`: the ``redeemed`` components charged on one code's unit value (the gross split
  over the line's units, the first ``gross % units`` units one fen more), paid by the tenant: they add up
  to zero.
- :func:`rollback_rows`: the exact reversal of a redemption's rows.
- :func:`refund_rows`: the reversal of ``k`` more refunded units of the sale rows, by a cumulative floor:
  after ``r`` of ``q`` units are refunded, each commission row has reversed ``trunc(original × r / q)`` and
  the tenant's net absorbs the rest so that ``floor(gross × r / q)`` is reversed in all; the last unit
  reverses exactly what remains, so a full refund returns every party of the line to zero.

Rounding: every charge is ``bp × base / 10000 + fixed_fen`` bounded by ``min_fen``/``max_fen``; every
party's exact share (the tenant's is the base less the exact charges) is rounded down to the fen and the
fen left over (fewer than the number of rows) go to ``remainder_to`` in a ``rounding`` row, or to the
tenant's net when that is the tenant (or a referrer/KOL the order does not have).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from core.splits.terms import SplitComponent, SplitTerms

__all__ = [
    "NET",
    "ROUNDING",
    "LineFacts",
    "Row",
    "charge",
    "component_key",
    "redemption_rows",
    "refund_rows",
    "rollback_rows",
    "sale_rows",
    "totals",
    "unit_value",
]

#: The component name of the tenant's net row and of the row of fen left over by rounding.
NET = "net"
ROUNDING = "rounding"
_BP = 10_000


@dataclass(frozen=True, slots=True)
class LineFacts:
    """What the engine needs to know of a line and its order."""

    gross_fen: int
    quantity: int
    first_line: bool = True
    referrer: str = ""
    kol: str = ""
    #: Distinct buyers the referrer (KOL) has brought to the account up to and including this order.
    referrer_count: int = 0
    kol_count: int = 0


class Row(NamedTuple):
    """One ledger row of an event: ``party`` gets ``amount_fen`` under ``component``."""

    component: str
    party: str
    amount_fen: int
    party_ref: str = ""


def component_key(index: int, component: SplitComponent) -> str:
    """The stable name of a rule's component in the ledger (``<index>:<basis>``)."""
    return f"{index}:{component.basis}"


def charge(component: SplitComponent, base: int) -> tuple[int, int]:
    """(amount in fen rounded down, exact amount × 10000) of one charge on ``base`` fen, within its bounds."""
    exact = component.bp * base + component.fixed_fen * _BP
    if component.min_fen is not None and exact < component.min_fen * _BP:
        exact = component.min_fen * _BP
    if component.max_fen is not None and exact > component.max_fen * _BP:
        exact = component.max_fen * _BP
    return exact // _BP, exact


#: A component compiled for the hot loop: (key, party, basis, bp, fixed × 10000, min × 10000 | None,
#: max × 10000 | None, min_referrals).
_Compiled = tuple[str, str, str, int, int, int | None, int | None, int]
_COMPILED: dict[int, tuple[SplitTerms, tuple[_Compiled, ...], bool]] = {}
_new_row = tuple.__new__  # Row(...) without the generated __new__'s Python frame (hot loop)


def _compiled(terms: SplitTerms) -> tuple[tuple[_Compiled, ...], bool]:
    """The terms' components as tuples, and whether any is charged on redemption (cached per terms
    object: the engine runs per line)."""
    hit = _COMPILED.get(id(terms))
    if hit is not None and hit[0] is terms:
        return hit[1], hit[2]
    out = tuple(
        (component_key(i, c), c.party, c.basis, c.bp, c.fixed_fen * _BP,
         None if c.min_fen is None else c.min_fen * _BP, None if c.max_fen is None else c.max_fen * _BP,
         c.min_referrals)
        for i, c in enumerate(terms.components)
    )
    redeemed = any(c.basis == "redeemed" for c in terms.components)
    if len(_COMPILED) >= 1024:
        _COMPILED.clear()
    _COMPILED[id(terms)] = (terms, out, redeemed)
    return out, redeemed


def _split(terms: SplitTerms, facts: LineFacts, base: int, total: int, at_sale: bool) -> list[Row]:
    """Rows for the components of one event on ``base``; they add up to ``total`` (gross, or zero).

    A component applies when its basis belongs to the event (``redeemed`` at a redemption, the others at
    the sale); a ``referrer``/``kol`` share only when the order has that sharer; ``conversion`` only when
    attributed (``channel``/``platform``: a referrer, else a KOL) and the sharer's count reaches
    ``min_referrals``; ``order`` only on the order's first line.
    """
    rows: list[Row] = []
    charged = exact_sum = 0
    referrer, kol = facts.referrer, facts.kol
    for key, party, basis, bp, fixed, lo, hi, refs in _compiled(terms)[0]:
        if at_sale == (basis == "redeemed"):
            continue
        if party == "referrer":
            if not referrer:
                continue
            count, ref = facts.referrer_count, referrer
        elif party == "kol":
            if not kol:
                continue
            count, ref = facts.kol_count, kol
        else:
            count, ref = (facts.referrer_count if referrer else facts.kol_count), ""
        if basis == "conversion" and ((not referrer and not kol) or count < refs):
            continue
        if basis == "order" and not facts.first_line:
            continue
        exact = bp * base + fixed
        if lo is not None and exact < lo:
            exact = lo
        if hi is not None and exact > hi:
            exact = hi
        amount = exact // _BP
        charged += amount
        exact_sum += exact
        if amount:
            rows.append(_new_row(Row, (key, party, amount, ref)))
    tenant = (total * _BP - exact_sum) // _BP
    left = total - charged - tenant
    to = terms.remainder_to
    ref = referrer if to == "referrer" else kol if to == "kol" else ""
    if to == "tenant" or (to in ("referrer", "kol") and not ref):
        tenant, left = tenant + left, 0
    rows.append(_new_row(Row, (NET, "tenant", tenant, "")))
    if left:
        rows.append(_new_row(Row, (ROUNDING, to, left, ref)))
    return rows


def sale_rows(terms: SplitTerms, facts: LineFacts) -> list[Row]:
    """The rows of a line's sale: charges of ``sale``/``conversion``/``order`` components and the net."""
    return _split(terms, facts, facts.gross_fen, facts.gross_fen, at_sale=True)


def unit_value(gross_fen: int, units: int, index: int) -> int:
    """The value of unit ``index`` (0-based) of ``units``: the first ``gross % units`` get one fen more."""
    if units <= 0 or not 0 <= index < units:
        raise ValueError(f"unit {index} of {units}")
    return gross_fen // units + (1 if index < gross_fen % units else 0)


def redemption_rows(terms: SplitTerms, facts: LineFacts, index: int, units: int) -> list[Row]:
    """The rows of the redemption of unit ``index`` of ``units``: ``redeemed`` charges paid by the tenant.

    Nothing is written when no ``redeemed`` component applies (an empty list).
    """
    value = unit_value(facts.gross_fen, units, index)
    if not _compiled(terms)[1]:
        return []
    rows = _split(terms, facts, value, 0, at_sale=False)
    return [] if all(r.amount_fen == 0 for r in rows) else rows


def rollback_rows(rows: Iterable[Row]) -> list[Row]:
    """The exact reversal of a redemption's rows."""
    return [Row(r.component, r.party, -r.amount_fen, r.party_ref) for r in rows]


def _toward_zero(amount: int, num: int, den: int) -> int:
    value = abs(amount) * num // den
    return value if amount >= 0 else -value


def refund_rows(sale: Sequence[Row], quantity: int, before: int, units: int) -> list[Row]:
    """The reversal of ``units`` more refunded units of a line of ``quantity`` whose ``before`` units were
    refunded already, given its sale rows (cumulative floor; the tenant's net absorbs the rest)."""
    if quantity <= 0 or before < 0 or units < 0 or before + units > quantity:
        raise ValueError(f"refund of {units} after {before} of {quantity} units")
    if units == 0:
        return []
    after = before + units
    gross = sum(r.amount_fen for r in sale)
    out: list[Row] = []
    others_before = others_after = 0
    net_ref = ""
    for r in sale:
        if r.component == NET and r.party == "tenant":
            net_ref = r.party_ref
            continue
        was = _toward_zero(r.amount_fen, before, quantity)
        now = _toward_zero(r.amount_fen, after, quantity)
        others_before += was
        others_after += now
        if now != was:
            out.append(Row(r.component, r.party, -(now - was), r.party_ref))
    net_was = gross * before // quantity - others_before
    net_now = gross * after // quantity - others_after
    if net_now != net_was:
        out.append(Row(NET, "tenant", -(net_now - net_was), net_ref))
    return out


def totals(rows: Iterable[Row]) -> dict[str, int]:
    """Sum of rows per party."""
    out: dict[str, int] = {}
    for r in rows:
        out[r.party] = out.get(r.party, 0) + r.amount_fen
    return out
