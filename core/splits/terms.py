"""The terms of a split rule: who takes what share of a channel order line, on which basis.

Stored as JSON on :class:`core.splits.models.SplitRule` and snapshotted on every order line. The engine
(:mod:`core.splits.engine`) turns terms and an event of a line into ledger rows.

Bases (when a component is charged):

- ``sale``: ``bp`` of the line's gross, plus ``fixed_fen``, when the order is taken;
- ``redeemed``: ``bp`` of the code's unit value, plus ``fixed_fen``, each time a code of the line is
  redeemed (unredeemed codes carry no commission until they are: breakage stays visible);
- ``conversion``: ``bp`` of the gross plus ``fixed_fen`` at sale, only when the order is attributed (a
  referrer for party ``referrer``, a KOL for party ``kol``, either for ``channel`` and ``platform``), and
  only once the attributed sharer has brought ``min_referrals`` distinct buyers;
- ``order``: ``fixed_fen`` plus ``bp`` of the gross, once per order (charged on its first line).

``min_fen`` / ``max_fen`` bound one charge. Every share is rounded down to the fen; the fractions left
over go to ``remainder_to`` (the tenant, unless named otherwise), so the rows of a line always add up to
its gross exactly.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["BASES", "PARTIES", "Basis", "Party", "SplitComponent", "SplitTerms"]

Party = Literal["channel", "platform", "referrer", "kol"]
Basis = Literal["sale", "redeemed", "conversion", "order"]
PARTIES: tuple[str, ...] = ("channel", "platform", "referrer", "kol", "tenant")
BASES: tuple[str, ...] = ("sale", "redeemed", "conversion", "order")

BasisPoints = Annotated[int, msgspec.Meta(ge=0, le=10_000, description="Basis points: 1500 = 15%.")]
Fen = Annotated[int, msgspec.Meta(ge=0, le=10**12, description="An amount in fen (1 yuan = 100 fen).")]


class SplitComponent(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One share of a line: ``party`` takes ``bp`` of the ``basis`` plus ``fixed_fen``, within bounds."""

    party: Party
    basis: Basis
    bp: BasisPoints = 0
    fixed_fen: Fen = 0
    min_fen: Fen | None = None
    max_fen: Fen | None = None
    min_referrals: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0
    label: Annotated[str, msgspec.Meta(max_length=60)] = ""


class SplitTerms(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A rule's components, and the party that receives the fractions of a fen left by rounding down."""

    components: Annotated[list[SplitComponent], msgspec.Meta(max_length=20)] = msgspec.field(default_factory=list)
    remainder_to: Literal["tenant", "channel", "platform", "referrer", "kol"] = "tenant"
