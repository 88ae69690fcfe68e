"""API bodies of the splits domain (money in integer fen; floats are refused)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec

from core.splits.terms import SplitTerms

Fen = Annotated[int, msgspec.Meta(ge=0, le=10**12)]
Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
Ref = Annotated[str, msgspec.Meta(max_length=100)]


class SplitRuleIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new version of a subject's rule; ``terms`` ``null``: stop overriding the broader level."""

    subject: Annotated[str, msgspec.Meta(min_length=3, max_length=120)]
    terms: SplitTerms | None
    valid_from: dt.datetime | None = None
    note: Annotated[str, msgspec.Meta(max_length=200)] = ""


class SplitRuleOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    subject: str
    version: int
    terms: dict[str, Any] | None
    valid_from: dt.datetime
    note: str
    created_by: str
    created_at: dt.datetime


class SplitRulePage(msgspec.Struct):
    items: list[SplitRuleOut]
    next_cursor: uuid.UUID | None = None


class InForceOut(msgspec.Struct, kw_only=True):
    """The rule an order of ``account_id`` (and ``listing_id``) placed at ``at`` gets."""

    rule_id: uuid.UUID | None
    subject: str
    version: int | None
    terms: dict[str, Any]


class PreviewIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An example order line; ``terms`` (or ``rule_id``, a saved version) is the rule to preview."""

    terms: SplitTerms | None = None
    rule_id: uuid.UUID | None = None
    gross_fen: Fen
    quantity: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    first_line: bool = True
    referrer: Ref = ""
    kol: Ref = ""
    referrer_count: Count = 0
    kol_count: Count = 0
    refund_units: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 1


class PreviewRow(msgspec.Struct, kw_only=True):
    component: str
    label: str
    party: str
    party_ref: str
    amount_fen: int


class PreviewEvent(msgspec.Struct, kw_only=True):
    """The rows one event writes, per-party totals, and the line's balance per party after it."""

    event: str
    description: str
    #: Units refunded by a ``refund`` event.
    units: int
    rows: list[PreviewRow]
    totals: dict[str, int]
    balance: Annotated[dict[str, int], msgspec.Meta(
        description="The line's balance per party after the event, in integer fen (1 yuan = 100 fen).")]


class PreviewOut(msgspec.Struct, kw_only=True):
    events: list[PreviewEvent]


class EntryOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    account_id: uuid.UUID
    line_id: uuid.UUID | None
    order_id: uuid.UUID | None
    rule_id: uuid.UUID | None
    event: str
    event_ref: str
    component: str
    party: str
    party_ref: str
    amount_fen: int
    period: str
    occurred_at: dt.datetime
    created_at: dt.datetime


class EntryPage(msgspec.Struct):
    items: list[EntryOut]
    next_cursor: uuid.UUID | None = None


class BalanceOut(msgspec.Struct, kw_only=True):
    account_id: uuid.UUID
    period: str
    party: str
    amount_fen: int
    rows: int


class BalancesOut(msgspec.Struct, kw_only=True):
    """Per account, period and party; with ``line``, that line's total per party in ``line``."""

    items: list[BalanceOut]
    line: dict[str, int] | None = None
