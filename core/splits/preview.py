"""The preview of a rule on an example line: the rows each event would write (nothing is stored)."""

from __future__ import annotations

from core.splits import engine
from core.splits.engine import LineFacts, Row
from core.splits.schemas import PreviewEvent, PreviewOut, PreviewRow
from core.splits.terms import SplitTerms

__all__ = ["component_labels", "preview"]


def component_labels(terms: SplitTerms) -> dict[str, str]:
    """Ledger component name → what the rule calls it."""
    out = {engine.component_key(i, c): c.label or f"{c.party} {c.basis}" for i, c in enumerate(terms.components)}
    out[engine.NET] = "Net to the tenant"
    out[engine.ROUNDING] = "Rounding remainder"
    return out


def preview(terms: SplitTerms, facts: LineFacts, refund_units: int = 1) -> PreviewOut:
    """Sale; redemption of the first unit and its rollback; a refund of ``refund_units`` units; a refund of
    the rest (the line back to zero for every party)."""
    labels = component_labels(terms)
    balance: dict[str, int] = {}
    events: list[PreviewEvent] = []

    def add(event: str, description: str, rows: list[Row], units: int = 0) -> None:
        for party, amount in engine.totals(rows).items():
            balance[party] = balance.get(party, 0) + amount
        events.append(PreviewEvent(
            event=event, description=description, units=units,
            rows=[PreviewRow(component=r.component, label=labels.get(r.component, r.component), party=r.party,
                             party_ref=r.party_ref, amount_fen=r.amount_fen) for r in rows],
            totals=engine.totals(rows), balance=dict(balance)))

    sale = engine.sale_rows(terms, facts)
    add("sale", "the order is taken", sale)
    redeemed = engine.redemption_rows(terms, facts, 0, facts.quantity)
    if redeemed:
        add("redemption", "the first unit's code is redeemed", redeemed)
        add("redemption_rollback", "that redemption is rolled back", engine.rollback_rows(redeemed))
    first = min(refund_units, facts.quantity)
    if 0 < first < facts.quantity:
        add("refund", f"{first} unit(s) refunded", engine.refund_rows(sale, facts.quantity, 0, first), first)
    else:
        first = 0
    add("refund", f"the remaining {facts.quantity - first} unit(s) refunded",
        engine.refund_rows(sale, facts.quantity, first, facts.quantity - first), facts.quantity - first)
    return PreviewOut(events=events)
