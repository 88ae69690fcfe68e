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
    ``member_id`` / ``grant_item_id`` say whose unit is used when several members hold the same code (a
    reusable code): that member's (or that) unredeemed grant item, ``404 holder_not_found`` if there is
    none. Without them the oldest unredeemed grant item of the code is used.
    """

    code: CodeText
    pin: PinText | None = None
    amount: Amount | None = None
    store: Place = ""
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
