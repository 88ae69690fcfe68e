"""Request and response bodies of the statements API (``/api/v1/statements``, ``/api/v1/statement-mappings``)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import msgspec

from core.settlement.statement_files import Preview

Header = Annotated[str, msgspec.Meta(max_length=100)]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
Kind = Literal["sale", "refund", "commission", "adjustment"]
Field = Literal["line_id", "order_id", "order_line_id", "kind", "amount", "commission", "occurred_at", "description"]


class MappingIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An account's column mapping: field → header of its files; their kind labels → ours; the amount unit."""

    columns: Annotated[dict[Field, Header], msgspec.Meta(max_length=8)]
    kinds: Annotated[dict[Label, Kind], msgspec.Meta(max_length=50)] = msgspec.field(default_factory=dict)
    amount_unit: Literal["yuan", "fen"] = "yuan"


class MappingOut(msgspec.Struct, kw_only=True):
    account_id: uuid.UUID
    saved: bool
    columns: dict[str, str]
    kinds: dict[str, str]
    amount_unit: str
    updated_at: dt.datetime | None = None
    updated_by: str = ""


class FetchIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fetch the account's statement lines of ``[start, end)`` (at most 93 days) through its connector."""

    account_id: uuid.UUID
    start: dt.datetime
    end: dt.datetime


class StatementOut(msgspec.Struct, kw_only=True):
    """One fetch or import: its counts (``lines_new`` stored now, ``lines_repeated`` already stored or
    repeated in the file) and ``problems`` (notes on repeated rows; a file with bad rows stores nothing)."""

    id: uuid.UUID
    account_id: uuid.UUID
    source: str
    filename: str
    digest: str
    encoding: str
    period_start: dt.datetime | None
    period_end: dt.datetime | None
    status: str
    lines_total: int
    lines_new: int
    lines_repeated: int
    lines_rejected: int
    problems: list[dict[str, Any]]
    error: str
    created_by: str
    created_at: dt.datetime
    finished_at: dt.datetime | None


class StatementPage(msgspec.Struct):
    items: list[StatementOut]
    next_cursor: uuid.UUID | None = None


class StatementLineOut(msgspec.Struct, kw_only=True):
    """A statement line: ``amount_fen`` positive for a sale's gross, an amount refunded, a commission charged."""

    id: uuid.UUID
    statement_id: uuid.UUID
    line_id: str
    order_id: str
    order_line_id: str
    kind: str
    amount_fen: int
    commission_fen: int
    occurred_at: dt.datetime
    period: str
    description: str
    row_number: int


class StatementLinePage(msgspec.Struct):
    items: list[StatementLineOut]
    next_cursor: uuid.UUID | None = None


class PreviewOut(Preview, kw_only=True):
    """A file looked at: its header, first rows, the suggested mapping and the account's saved one."""

    saved: MappingOut
