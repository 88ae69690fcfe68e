"""Invite links: a tenant-carrying random token whose digest is stored on the user row."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid

from core.db.base import utcnow
from tenants.security import digest

INVITE_TTL = dt.timedelta(days=7)


def new_invite_token(tenant_id: uuid.UUID) -> tuple[str, str, dt.datetime]:
    """(token, digest, expires_at) for a new invite."""
    token = f"kqi_{tenant_id.hex}_{secrets.token_urlsafe(24)}"
    return token, digest(token), utcnow() + INVITE_TTL


def invite_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/console/invite/{token}"
