"""Secrets of the auth realm: argon2 password hashes, random tokens and their digests.

Passwords are low-entropy, so they get argon2id. API client secrets, access tokens and invite tokens
are 256-bit random values, for which a SHA-256 digest is a sufficient (and fast) at-rest form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    if not stored:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)


def random_secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def new_client_id(tenant_id: uuid.UUID) -> str:
    """Client ids carry the tenant so the token endpoint can set the tenant context before lookup."""
    return f"kqc_{tenant_id.hex}_{secrets.token_hex(4)}"


def new_access_token(tenant_id: uuid.UUID) -> str:
    return f"kqat_{tenant_id.hex}_{secrets.token_urlsafe(32)}"


def tenant_of_credential(value: str, prefix: str) -> uuid.UUID | None:
    """The tenant id embedded in a client id or access token, or None if malformed."""
    parts = value.split("_", 2)
    if len(parts) != 3 or parts[0] != prefix:
        return None
    try:
        return uuid.UUID(hex=parts[1])
    except ValueError:
        return None


def generate_password() -> str:
    return secrets.token_urlsafe(12)
