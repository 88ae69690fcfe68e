"""Grant requests and responses (the interface other domains code against)."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

MAX_GRANT_QUANTITY = 100
CHANNELS = ("sms", "email", "none")


class GrantRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Grant ``quantity`` units of a product to a member or a contact."""

    product_id: uuid.UUID
    quantity: int = 1  # 1..MAX_GRANT_QUANTITY per grant
    member_id: uuid.UUID | None = None  # an existing member, or
    external_id: str | None = None  # the tenant's member id (member created if unknown)
    phone: str | None = None  # mainland mobile, +86 optional (member found/created by phone digest)
    email: str | None = None
    name: str | None = None
    channel: str | None = None  # "sms" | "email" | None = by what the contact has; "none" = no delivery
    campaign_ref: str | None = None


class VoidRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: str


class GrantCodeOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One unit of a grant: masked always; ``number``/``pin`` only to callers allowed to reveal."""

    item_id: uuid.UUID
    code_id: uuid.UUID
    masked: str
    last4: str
    status: str
    expires_at: dt.datetime | None = None
    number: str | None = None
    pin: str | None = None


class GrantMemberOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    external_id: str | None
    phone_masked: str | None
    email: str | None
    name: str | None


class GrantOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    ref: str
    status: str
    product_id: uuid.UUID
    quantity: int
    member: GrantMemberOut | None
    channel: str | None
    contact_masked: str | None
    campaign_ref: str | None
    source: str
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    delivery_detail: str | None
    voided_at: dt.datetime | None
    void_reason: str | None
    codes: list[GrantCodeOut]
    revealed: bool = False


class GrantPage(msgspec.Struct):
    items: list[GrantOut]
    next_cursor: uuid.UUID | None
