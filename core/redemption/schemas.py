"""Structs in and out of the redemption API. Codes leave masked (``•••• 1234``), never in plaintext."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

import msgspec

from core.inventory.vault import MAX_CODE_LENGTH
from core.validation import Fen, FenDelta, PositiveFen

CodeText = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CODE_LENGTH + 32)]
PinText = Annotated[str, msgspec.Meta(max_length=128)]
Place = Annotated[str, msgspec.Meta(max_length=64)]
Amount = PositiveFen
MAX_ROLLBACK_WINDOW_MINUTES = 7 * 24 * 60


class RedeemIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A code as printed or scanned (spaces, dashes and case are forgiven), its PIN, and where it is used.

    ``amount`` (fen) is for stored-value cards only: the part of the balance to spend.
    ``store_id`` or ``store`` (a store's code or name) say where: once the tenant has stores (门店), the
    store must be one of its active stores (``422 unknown_store`` / ``422 store_inactive``); before that,
    ``store`` is free text, kept as written.
    ``member_id`` / ``grant_item_id`` say whose unit is used when several members hold the same code (a
    reusable code): that member's (or that) unredeemed grant item, ``404 holder_not_found`` if there is
    none. Without them the oldest unredeemed grant item of the code is used.
    """

    code: CodeText
    pin: PinText | None = None
    amount: Amount | None = None
    store: Place = ""
    store_id: uuid.UUID | None = None
    terminal: Place = ""
    reference: Annotated[str, msgspec.Meta(max_length=120)] | None = None
    member_id: uuid.UUID | None = None
    grant_item_id: uuid.UUID | None = None


class ValidationOut(msgspec.Struct):
    """A code that may be redeemed now (nothing was changed)."""

    valid: bool
    code_id: uuid.UUID
    masked: str
    product_id: uuid.UUID
    product_name: str
    kind: str
    expires_at: dt.datetime | None
    currency: str
    uses: int | None = None
    """Reusable codes: redemptions so far."""
    uses_remaining: int | None = None
    """Reusable codes: redemptions still possible (handed-out uses not yet redeemed)."""
    balance: Fen | None = None
    """Stored-value cards: the balance in fen."""
    member_id: uuid.UUID | None = None
    """The holder whose unit a redemption would use (the given member, else the oldest holder)."""
    grant_item_id: uuid.UUID | None = None
    """That holder's grant item."""


class RedemptionOut(msgspec.Struct):
    id: uuid.UUID
    code_id: uuid.UUID
    masked: str
    product_id: uuid.UUID
    kind: str
    status: str
    store: str
    terminal: str
    reference: str | None
    amount: Fen | None
    currency: str
    balance_after: Fen | None
    use_number: int | None
    member_id: uuid.UUID | None
    grant_item_id: uuid.UUID | None
    user_id: uuid.UUID | None
    client_id: uuid.UUID | None
    redeemed_at: dt.datetime
    rollback_until: dt.datetime
    rolled_back_at: dt.datetime | None
    rollback_reason: str | None
    store_id: uuid.UUID | None = None
    """The store record, when the redemption named one of the tenant's stores."""


class RedemptionPage(msgspec.Struct):
    items: list[RedemptionOut]
    next_cursor: uuid.UUID | None


class RollbackIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class LedgerEntryOut(msgspec.Struct):
    id: uuid.UUID
    kind: str
    delta: FenDelta
    balance_after: Fen
    redemption_id: uuid.UUID | None
    created_at: dt.datetime


class LedgerOut(msgspec.Struct):
    code_id: uuid.UUID
    masked: str
    product_id: uuid.UUID
    currency: str
    initial_balance: Fen
    balance: Fen
    entries: list[LedgerEntryOut]


class RedemptionSettingsIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    rollback_window_minutes: Annotated[int, msgspec.Meta(ge=0, le=MAX_ROLLBACK_WINDOW_MINUTES)]


class RedemptionSettingsOut(msgspec.Struct):
    rollback_window_minutes: int


class SummaryRow(msgspec.Struct, kw_only=True):
    """One store (``id`` the store record, ``None`` for a free-text store, ``label`` its name) or one
    console user (``id`` the user, ``None`` for API clients, ``code`` the e-mail)."""

    id: uuid.UUID | None
    code: str
    label: str
    count: int
    """Redemptions (not rolled back)."""
    value: Fen
    """What they took, integer fen: the amount of a stored-value spend, else the product's face value."""
    rolled_back: int
    """Redemptions rolled back since."""


class RedemptionSummary(msgspec.Struct, kw_only=True):
    """Redemptions from ``first_day`` to ``last_day`` (whole days in ``timezone``: ``[since, until)``)."""

    first_day: dt.date
    last_day: dt.date
    timezone: str
    since: dt.datetime
    until: dt.datetime
    count: int
    value: Fen
    """Total value, integer fen."""
    by_store: list[SummaryRow]
    by_user: list[SummaryRow]
