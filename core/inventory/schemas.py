"""Structs in and out of the inventory API: stock, batches, masked codes, custody and allocation.

Codes leave the service layer masked (``•••• 1234``); only :class:`RevealedCodeOut` carries plaintext,
and only from an audited reveal.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec

from core.validation import Fen

Reason = Annotated[str, msgspec.Meta(max_length=500)]


class StockLevelOut(msgspec.Struct):
    available: int
    reserved: int
    issued: int
    redeemed: int
    expired: int
    voided: int
    total: int
    available_value: Fen
    """Cost value (fen) of the available codes, at their batches' unit cost."""
    currency: str


class BatchStockOut(msgspec.Struct):
    batch_id: uuid.UUID
    ref: str
    supplier: str
    unit_cost: Fen
    currency: str
    expires_at: dt.datetime | None
    levels: StockLevelOut


class ProductStockOut(msgspec.Struct):
    product_id: uuid.UUID
    sku: str
    kind: str
    levels: StockLevelOut
    batches: list[BatchStockOut]


class BatchOut(msgspec.Struct):
    id: uuid.UUID
    ref: str
    product_id: uuid.UUID
    source: str
    supplier: str
    unit_cost: Fen
    currency: str
    purchase_ref: str
    expires_at: dt.datetime | None
    notes: str
    code_count: int
    created_at: dt.datetime


class BatchDetail(msgspec.Struct):
    batch: BatchOut
    levels: StockLevelOut


class BatchPage(msgspec.Struct):
    items: list[BatchOut]
    next_cursor: uuid.UUID | None


class MaskedCodeOut(msgspec.Struct):
    """A code as lists show it: never the number or PIN, only the masked last four characters."""

    id: uuid.UUID
    product_id: uuid.UUID
    batch_id: uuid.UUID
    masked: str
    has_pin: bool
    state: str
    expires_at: dt.datetime | None
    uses_left: int | None


class CodePage(msgspec.Struct):
    items: list[MaskedCodeOut]
    next_cursor: uuid.UUID | None


class VoidIn(msgspec.Struct, forbid_unknown_fields=True):
    code_ids: list[uuid.UUID]
    reason: Reason


class VoidOut(msgspec.Struct):
    voided: int


class RevealIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason


class RevealedCodeOut(msgspec.Struct):
    id: uuid.UUID
    number: str
    pin: str | None
    state: str
    expires_at: dt.datetime | None


class ExportIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason
    states: list[str] = msgspec.field(default_factory=lambda: ["available"])


class StockAlertOut(msgspec.Struct):
    id: uuid.UUID
    product_id: uuid.UUID
    sku: str
    name_zh: str
    kind: str
    """``low_stock`` or ``near_expiry``."""
    status: str
    details: dict[str, Any]
    created_at: dt.datetime


class AllocationIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Take ``quantity`` codes FEFO; with ``reserve_seconds`` they are held (confirm or release later)."""

    product_id: uuid.UUID
    quantity: int
    purpose: Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
    reserve_seconds: Annotated[int, msgspec.Meta(ge=1, le=86_400)] | None = None


class AllocatedCodeOut(msgspec.Struct):
    id: uuid.UUID
    batch_id: uuid.UUID
    masked: str
    expires_at: dt.datetime | None


class AllocationOut(msgspec.Struct):
    product_id: uuid.UUID
    purpose: str
    state: str
    """``issued`` or ``reserved``."""
    codes: list[AllocatedCodeOut]
    reservation_id: uuid.UUID | None
    reserved_until: dt.datetime | None


class ReleaseIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason = "released"


class ReleaseOut(msgspec.Struct):
    reservation_id: uuid.UUID
    released: int
