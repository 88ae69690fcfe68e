"""How codes are kept: AES-256-GCM under the tenant's data key, an HMAC digest for lookup, the last 4
characters for display. Plaintext exists only in memory, on the way in (import/generate) and out
(delivery, audited reveal or export).
"""

from __future__ import annotations

import msgspec

from core.crypto.envelope import TenantCipher

MAX_CODE_LENGTH = 128


class SealedCode(msgspec.Struct, frozen=True):
    digest: str
    secret: bytes
    last4: str
    has_pin: bool


def clean(number: str) -> str:
    """The stored form of a card number: surrounding whitespace removed, case and inner characters kept."""
    return number.strip()


def digest_of(cipher: TenantCipher, number: str) -> str:
    """Lookup key of a card number (HMAC-SHA256 under the tenant's key); unique per tenant."""
    return cipher.digest(clean(number).encode("utf-8"))


def seal(cipher: TenantCipher, number: str, pin: str | None = None) -> SealedCode:
    number = clean(number)
    digest = digest_of(cipher, number)
    payload = msgspec.msgpack.encode([number, pin])
    # The digest is the associated data: a ciphertext moved to another row no longer decrypts.
    return SealedCode(digest, cipher.encrypt(payload, aad=digest.encode()), number[-4:], pin is not None)


def unseal(cipher: TenantCipher, digest: str, secret: bytes) -> tuple[str, str | None]:
    number, pin = msgspec.msgpack.decode(cipher.decrypt(secret, aad=digest.encode()))
    return number, pin


def masked(last4: str) -> str:
    return "•••• " + last4
