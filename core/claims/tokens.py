"""Signed tokens for the member-facing pages: claim links, campaign pages and the member session cookie.

A token is ``<payload>.<signature>``, both URL-safe base64 without padding. The payload carries a kind
byte, the tenant id, an object id and an expiry (Unix seconds, 0 = none); the signature is the first 16
bytes of an HMAC-SHA256 under the tenant's digest key (``TenantCipher.digest``) over a per-kind label and
the payload. The tenant id is read from the payload first (it selects the key), so a token can only ever
be verified against the tenant it names, and any change to a byte breaks the signature.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import struct
import uuid
from dataclasses import dataclass
from typing import Literal

from core.crypto.envelope import TenantCipher

TokenKind = Literal["claim_link", "campaign", "member_session"]
_KINDS: dict[str, int] = {"claim_link": 1, "campaign": 2, "member_session": 3}
_LAYOUT = struct.Struct(">B16s16sQ")
_SIGNATURE_BYTES = 16
MAX_TOKEN_LENGTH = 200


class BadToken(Exception):
    """Malformed, for another purpose, or tampered with (the signature does not match)."""


@dataclass(frozen=True)
class TokenClaims:
    kind: str
    tenant_id: uuid.UUID
    object_id: uuid.UUID
    expires_at: dt.datetime | None

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise BadToken("not base64") from exc


def _signature(cipher: TenantCipher, kind: str, payload: bytes) -> bytes:
    return bytes.fromhex(cipher.digest(b"kaquan-h5-token:" + kind.encode() + b":" + payload))[
        :_SIGNATURE_BYTES
    ]


def sign(
    cipher: TenantCipher, kind: TokenKind, object_id: uuid.UUID, expires_at: dt.datetime | None = None
) -> str:
    """A token for ``object_id`` of ``cipher``'s tenant."""
    expiry = int(expires_at.timestamp()) if expires_at is not None else 0
    payload = _LAYOUT.pack(_KINDS[kind], cipher.tenant_id.bytes, object_id.bytes, expiry)
    return f"{_b64(payload)}.{_b64(_signature(cipher, kind, payload))}"


def peek_tenant(token: str, kind: TokenKind) -> uuid.UUID:
    """The tenant a token names, before its signature is checked (to choose the key); raises BadToken."""
    return _parse(token, kind)[0].tenant_id


def verify(cipher: TenantCipher, token: str, kind: TokenKind) -> TokenClaims:
    """The claims of a genuine token of ``cipher``'s tenant; raises BadToken otherwise (expiry not checked)."""
    claims, payload, signature = _parse(token, kind)
    if claims.tenant_id != cipher.tenant_id:
        raise BadToken("token of another tenant")
    if not hmac.compare_digest(signature, _signature(cipher, kind, payload)):
        raise BadToken("bad signature")
    return claims


def _parse(token: str, kind: TokenKind) -> tuple[TokenClaims, bytes, bytes]:
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise BadToken("malformed")
    head, tail = token.split(".")
    payload, signature = _unb64(head), _unb64(tail)
    if len(payload) != _LAYOUT.size or len(signature) != _SIGNATURE_BYTES:
        raise BadToken("wrong length")
    kind_byte, tenant, obj, expiry = _LAYOUT.unpack(payload)
    if kind_byte != _KINDS[kind]:
        raise BadToken("wrong kind")
    expires_at = dt.datetime.fromtimestamp(expiry, dt.UTC) if expiry else None
    return TokenClaims(kind, uuid.UUID(bytes=tenant), uuid.UUID(bytes=obj), expires_at), payload, signature
