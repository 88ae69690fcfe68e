"""Campaign requests and responses."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

import msgspec
from msgspec import UNSET, UnsetType

MAX_CLAIM_QUANTITY = 10
MAX_PER_MEMBER_LIMIT = 100


class CampaignCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    product_id: uuid.UUID
    quantity: int = 1  # units per claim, 1..10
    per_member_limit: int = 1  # claims per member over the campaign, 1..100
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    active: bool = True


class CampaignUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A partial change: only the fields sent change; ``null`` clears ``starts_at`` / ``ends_at``.

    The product cannot change. Editing never reopens a stopped campaign (only ``POST .../resume`` does).
    """

    name: str | UnsetType = UNSET
    quantity: int | UnsetType = UNSET
    per_member_limit: int | UnsetType = UNSET
    starts_at: dt.datetime | UnsetType | None = UNSET
    ends_at: dt.datetime | UnsetType | None = UNSET
    active: bool | UnsetType = UNSET


class CampaignOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    ref: str
    name: str
    product_id: uuid.UUID
    quantity: int
    per_member_limit: int
    starts_at: dt.datetime | None
    ends_at: dt.datetime | None
    active: bool
    state: str  # open | inactive (paused) | not_started | ended | stopped
    stopped_at: dt.datetime | None
    claim_count: int  # successful claims (one grant each)
    member_count: int  # distinct members who claimed
    code_count: int  # codes handed out by those claims and not voided (a transferred code counts once)
    url: str
    path: str
    created_at: dt.datetime
    short_code: str | None = None  # 4–8 Crockford base32 characters, unique on the platform
    short_url: str | None = None  # ``<base>/c/<short_code>``: redirects (302) to ``url``; for SMS and posters


class CampaignPage(msgspec.Struct):
    items: list[CampaignOut]
    next_cursor: uuid.UUID | None
