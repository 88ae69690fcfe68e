"""Risk control API shapes (msgspec)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

Action = Literal["grant", "claim", "transfer", "redeem"]
Dimension = Literal["member", "phone", "ip", "device", "client"]
Window = Literal["day", "month"]
BlockKind = Literal["phone", "device", "ip"]


class LimitRule(msgspec.Struct, forbid_unknown_fields=True):
    """At most ``limit`` units of ``action`` per ``dimension`` value per tenant-local ``window``."""

    action: Action
    dimension: Dimension
    window: Window
    limit: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    active: bool = True


class Velocity(msgspec.Struct, forbid_unknown_fields=True):
    """Failed attempts (wrong code or PIN) per client, IP or device before a lockout of ``redeem``."""

    failure_limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 10
    window_minutes: Annotated[int, msgspec.Meta(ge=1, le=24 * 60)] = 10
    lockout_minutes: Annotated[int, msgspec.Meta(ge=1, le=7 * 24 * 60)] = 15


class RuleSet(msgspec.Struct, forbid_unknown_fields=True):
    """The whole tenant rule set; ``PUT`` replaces it."""

    limits: list[LimitRule]
    velocity: Velocity = msgspec.field(default_factory=Velocity)
    device_member_limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 3


class RuleSetOut(msgspec.Struct):
    limits: list[LimitRule]
    velocity: Velocity
    device_member_limit: int
    timezone: str
    customized: bool  # False: the defaults, not saved yet


class BlockIn(msgspec.Struct, forbid_unknown_fields=True):
    kind: BlockKind
    value: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    note: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class BlockOut(msgspec.Struct):
    id: uuid.UUID
    kind: str
    display: str
    note: str | None
    created_at: dt.datetime


class BlockPage(msgspec.Struct):
    items: list[BlockOut]
    next_cursor: uuid.UUID | None


class RefusalOut(msgspec.Struct):
    id: uuid.UUID
    action: str
    reason: str
    dimension: str | None
    subject: str | None
    member_id: uuid.UUID | None
    client_id: uuid.UUID | None
    quantity: int
    limit: int | None
    occurred_at: dt.datetime


class RefusalPage(msgspec.Struct):
    items: list[RefusalOut]
    next_cursor: uuid.UUID | None


class FlagOut(msgspec.Struct):
    id: uuid.UUID
    kind: str
    day: str
    subject: str
    member_count: int
    created_at: dt.datetime


class FlagPage(msgspec.Struct):
    items: list[FlagOut]
    next_cursor: uuid.UUID | None


class LockoutOut(msgspec.Struct):
    id: uuid.UUID
    action: str
    dimension: str
    subject: str
    failures: int
    locked_until: dt.datetime
    lifted_at: dt.datetime | None
    lifted_by: str | None
    active: bool
    created_at: dt.datetime


class LockoutPage(msgspec.Struct):
    items: list[LockoutOut]
    next_cursor: uuid.UUID | None
