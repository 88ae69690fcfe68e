"""Structs in and out of the bulk-grant service (API and console share them)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import msgspec

BulkChannel = Literal["sms", "email", "none"]


class BulkGrantFields(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Form fields next to the file.

    ``campaign_ref`` scopes re-runs: a recipient gets a product at most once per campaign through bulk grants
    (empty = the tenant's default scope). ``channel``: deliver by SMS, by e-mail, not at all (``none``), or —
    when absent — by whatever contact the row has.
    """

    campaign_ref: Annotated[str, msgspec.Meta(max_length=120)] = ""
    channel: BulkChannel | None = None


class ProductTotal(msgspec.Struct):
    """Units a file asks for per product against what is in stock."""

    sku: str
    product_id: uuid.UUID
    name: str
    rows: int
    quantity: int
    available: int
    shortfall: int


class RowProblem(msgspec.Struct):
    row: int
    code: str


class BulkGrantOut(msgspec.Struct):
    """A bulk grant as the API returns it (``report`` holds the validation report)."""

    id: uuid.UUID
    status: str
    campaign_ref: str
    channel: str | None
    filename: str
    file_format: str
    encoding: str
    size_bytes: int
    total_rows: int
    valid_rows: int
    already_granted: int
    granted: int
    failed: int
    report: dict[str, Any]
    job_id: uuid.UUID | None
    error: str | None
    created_at: dt.datetime
    confirmed_at: dt.datetime | None
    finished_at: dt.datetime | None


class BulkGrantPage(msgspec.Struct):
    items: list[BulkGrantOut]
    next_cursor: uuid.UUID | None


class BulkJobAccepted(msgspec.Struct):
    """The grant job was queued: poll ``GET /api/v1/jobs/{job_id}`` for progress."""

    job_id: uuid.UUID
    bulk_grant_id: uuid.UUID
    status: str


class BulkOutcome(msgspec.Struct, kw_only=True):
    """How one run of the job ended (counts only; never a contact or a code)."""

    bulk_grant_id: uuid.UUID
    status: str  # done | skipped | failed
    granted: int = 0
    already_granted: int = 0
    failed: int = 0
    errors: dict[str, int] = msgspec.field(default_factory=dict)
