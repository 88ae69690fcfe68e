"""Member requests and responses."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

MAX_TAGS = 20


class MemberCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    external_id: str | None = None
    phone: str | None = None
    email: str | None = None
    name: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)


class MemberUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields to change; an absent field stays as it is, ``null`` clears it (not the external id)."""

    external_id: str | msgspec.UnsetType | None = msgspec.UNSET
    phone: str | msgspec.UnsetType | None = msgspec.UNSET
    email: str | msgspec.UnsetType | None = msgspec.UNSET
    name: str | msgspec.UnsetType | None = msgspec.UNSET
    tags: list[str] | msgspec.UnsetType = msgspec.UNSET
    status: str | msgspec.UnsetType = msgspec.UNSET


class MemberOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    external_id: str | None
    phone_masked: str | None
    email: str | None
    name: str | None
    tags: list[str]
    source: str
    status: str
    created_at: dt.datetime


class MemberPage(msgspec.Struct):
    items: list[MemberOut]
    next_cursor: uuid.UUID | None


class ImportProblem(msgspec.Struct, kw_only=True):
    row: int
    field: str
    code: str
    message: str


class MemberImportReport(msgspec.Struct, kw_only=True):
    """Result of a member CSV import: all rows inserted, or none (then ``problems`` says why)."""

    encoding: str
    total_rows: int
    valid_rows: int
    inserted: int
    problems: list[ImportProblem]
