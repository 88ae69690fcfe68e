"""Identifiers: UUIDv7 for rows, short readable references for people."""

from __future__ import annotations

import secrets
import uuid

from uuid_utils.compat import uuid7 as _uuid7

_READABLE = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32, no I L O U


def new_id() -> uuid.UUID:
    """A time-ordered UUIDv7 (stdlib ``uuid.UUID``)."""
    return _uuid7()


def readable_ref(prefix: str, length: int = 10) -> str:
    """A short reference people can read aloud and type, e.g. ``T-7K2M9QX4PA``."""
    return f"{prefix}-" + "".join(secrets.choice(_READABLE) for _ in range(length))
