"""Claim-link requests and responses."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

MIN_LINK_TTL_SECONDS = 300
MAX_LINK_TTL_SECONDS = 90 * 86_400
DEFAULT_LINK_TTL_SECONDS = 7 * 86_400


class ClaimLinkCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How long the link stays valid (default 7 days, 5 minutes to 90 days)."""

    expires_in_seconds: int | None = None


class ClaimLinkOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    grant_id: uuid.UUID
    url: str
    path: str
    expires_at: dt.datetime
    status: str
    phone_masked: str | None  # the phone that must confirm the link, when known
