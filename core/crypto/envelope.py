"""AES-256-GCM envelope encryption with a master keyring and per-tenant data keys.

Master keys are given as ``<key-id>:<urlsafe-base64 32 bytes>``; the current one encrypts (wraps),
any listed previous one can still unwrap, so ``kaquan keys rotate`` re-wraps without downtime.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

log = structlog.get_logger(__name__)

NONCE_BYTES = 12


class KeyError_(Exception):
    """A master key is missing, malformed or cannot unwrap a data key."""


def _parse_key(spec: str) -> tuple[str, bytes]:
    if ":" not in spec:
        raise KeyError_("a master key must look like '<id>:<base64 of 32 bytes>'")
    key_id, b64 = spec.split(":", 1)
    try:
        raw = base64.urlsafe_b64decode(b64.strip() + "=" * (-len(b64.strip()) % 4))
    except ValueError as exc:
        raise KeyError_(f"master key {key_id!r} is not valid base64") from exc
    if len(raw) != 32:
        raise KeyError_(f"master key {key_id!r} must be 32 bytes, got {len(raw)}")
    return key_id.strip(), raw


def generate_master_key_spec(key_id: str | None = None) -> str:
    key_id = key_id or "mk-" + uuid.uuid4().hex[:8]
    return f"{key_id}:{base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip('=')}"


@dataclass
class MasterKeyring:
    current_id: str
    keys: dict[str, bytes] = field(repr=False)

    @classmethod
    def from_specs(cls, current: str, previous: str = "") -> MasterKeyring:
        cid, ckey = _parse_key(current)
        keys = {cid: ckey}
        for spec in filter(None, (p.strip() for p in previous.split(","))):
            kid, key = _parse_key(spec)
            keys.setdefault(kid, key)
        return cls(current_id=cid, keys=keys)

    def wrap(self, data_key: bytes, tenant_id: uuid.UUID) -> tuple[bytes, str]:
        nonce = os.urandom(NONCE_BYTES)
        ct = AESGCM(self.keys[self.current_id]).encrypt(nonce, data_key, b"kaquan-dk:" + tenant_id.bytes)
        return nonce + ct, self.current_id

    def unwrap(self, wrapped: bytes, key_id: str, tenant_id: uuid.UUID) -> bytes:
        key = self.keys.get(key_id)
        if key is None:
            raise KeyError_(f"master key {key_id!r} is not configured; add it to KAQUAN_PREVIOUS_MASTER_KEYS")
        try:
            return AESGCM(key).decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], b"kaquan-dk:" + tenant_id.bytes
            )
        except (InvalidTag, ValueError) as exc:  # a wrong key, or a blob too short to hold a nonce
            raise KeyError_(f"master key {key_id!r} cannot unwrap the data key of this tenant") from exc


class TenantCipher:
    """Encrypts secrets of one tenant and computes their lookup digest."""

    def __init__(self, tenant_id: uuid.UUID, data_key: bytes) -> None:
        self.tenant_id = tenant_id
        self._aead = AESGCM(data_key)
        self._digest_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=tenant_id.bytes, info=b"kaquan-digest"
        ).derive(data_key)

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes = b"") -> bytes:
        return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)

    def digest(self, value: bytes) -> str:
        """HMAC-SHA256 hex digest, stable for the tenant: the lookup key of a secret."""
        return hmac.new(self._digest_key, value, hashlib.sha256).hexdigest()


def load_keyring(master_key: str, previous: str, data_dir: Path, embedded: bool) -> MasterKeyring:
    """The configured keyring; in embedded mode a key is generated into the data folder (with a warning)."""
    if master_key:
        return MasterKeyring.from_specs(master_key, previous)
    if not embedded:
        raise KeyError_("KAQUAN_MASTER_KEY is required outside embedded mode")
    path = data_dir / "master.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(generate_master_key_spec() + "\n", encoding="utf-8")
        path.chmod(0o600)
        log.warning(
            "master_key_generated",
            path=str(path),
            hint="embedded mode generated a master key; set KAQUAN_MASTER_KEY in production and back it up",
        )
    return MasterKeyring.from_specs(path.read_text(encoding="utf-8").strip(), previous)
