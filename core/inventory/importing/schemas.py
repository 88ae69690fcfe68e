"""Structs in and out of the import and generation services (API, console and CLI share them)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import msgspec

from core.inventory.importing.parsing import ColumnMapping
from core.validation import Fen

Cost = Fen
"""Unit cost: integer fen, like every amount."""
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. CNY")]
ConfirmMode = Literal["valid_only", "all_or_nothing"]


class BatchFields(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the batch records: supplier (free text), unit cost, purchase reference, expiry and notes.

    ``expires_at`` is a date (``YYYY-MM-DD``, valid through that day in the tenant's timezone) or an ISO
    date-time; a row's own expiry overrides it. ``currency`` defaults to the product's.
    """

    product_id: uuid.UUID
    supplier: Annotated[str, msgspec.Meta(max_length=200)] = ""
    unit_cost: Cost = 0
    currency: Currency | None = None
    purchase_ref: Annotated[str, msgspec.Meta(max_length=100)] = ""
    expires_at: Annotated[str, msgspec.Meta(max_length=40)] | None = None
    notes: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class ImportRequest(BatchFields, kw_only=True, forbid_unknown_fields=True):
    """An upload's batch fields, an optional column mapping and an optional encoding override."""

    mapping: ColumnMapping | None = None
    encoding: Annotated[str, msgspec.Meta(max_length=40)] | None = None


class TextImportRequest(ImportRequest, kw_only=True, forbid_unknown_fields=True):
    """Pasted text (JSON body): one code per line, or number and PIN separated as in a TXT file."""

    text: str


class ConfirmRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Import the valid rows, or import nothing if any row has a problem."""

    mode: ConfirmMode = "valid_only"


class GenerationRequest(BatchFields, kw_only=True, forbid_unknown_fields=True):
    """Generate ``count`` codes (Crockford base32, check symbol, ≥ 80 random bits) into a new batch."""

    count: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    prefix: Annotated[str, msgspec.Meta(max_length=16)] = ""
    pattern: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class ImportOut(msgspec.Struct):
    """An import (or a generation) as the API returns it."""

    id: uuid.UUID
    status: str
    product_id: uuid.UUID
    source: str
    filename: str
    file_format: str
    encoding: str
    size_bytes: int
    total_rows: int
    valid_rows: int
    batch_fields: dict[str, Any]
    mapping: dict[str, Any]
    report: dict[str, Any]
    job_id: uuid.UUID | None
    batch_id: uuid.UUID | None
    error: str | None
    created_at: dt.datetime


class JobAccepted(msgspec.Struct):
    """A job was queued: poll ``GET /api/v1/jobs/{job_id}`` for progress."""

    job_id: uuid.UUID
    import_id: uuid.UUID
    status: str


class ImportOutcome(msgspec.Struct, kw_only=True):
    """How a run of the import or generation job ended (never holds a code)."""

    import_id: uuid.UUID
    status: str  # imported | failed | skipped
    batch_id: uuid.UUID | None = None
    batch_ref: str | None = None
    imported: int = 0
    skipped_duplicates: int = 0
    error_code: str | None = None
    error_en: str | None = None
    error_zh: str | None = None
