"""Stripe-style webhook signatures: ``Kaquan-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.

:func:`verify` is the reference receiver check (the same code is in ``docs/api.md``): it recomputes the
HMAC over the raw body, compares in constant time and refuses timestamps outside the tolerance, so a
captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SECRET_PREFIX = "whsec_"
SIGNATURE_HEADER = "Kaquan-Signature"
EVENT_ID_HEADER = "Kaquan-Event-Id"
DELIVERY_ID_HEADER = "Kaquan-Delivery-Id"
DEFAULT_TOLERANCE_SECONDS = 300


def generate_secret() -> str:
    """A new signing secret (256 random bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def compute(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body`` under ``secret``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Kaquan-Signature`` value for ``body`` signed now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={compute(secret, t, body)}"


def parse_header(header: str) -> tuple[int | None, list[str]]:
    """The timestamp and every ``v1`` signature of a header (several during a secret rotation)."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    return timestamp, signatures


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether ``header`` is a valid signature of ``body`` made within ``tolerance`` seconds of ``now``."""
    timestamp, signatures = parse_header(header)
    if timestamp is None or not signatures:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = compute(secret, timestamp, body)
    return any(hmac.compare_digest(expected, s) for s in signatures)
