"""How codes are kept: AES-256-GCM under the tenant's data key, an HMAC digest for lookup, and a short hint
for display. Plaintext exists only in memory, on the way in (import/generate) and out (delivery, audited
reveal or export).

The digest is computed on the canonical form (:func:`core.normalize.typed`: NFKC, no spaces, dashes or
invisible characters), so ``１２３４-５６７８`` and ``12345678`` are one code. The ciphertext keeps the code as
it is shown (NFKC, surrounding spaces removed, dashes kept) for delivery. The hint (``codes.last4``)
reveals at most a third of the canonical code, and nothing of a code shorter than 8 characters.
"""

from __future__ import annotations

import msgspec

from core.crypto.envelope import TenantCipher
from core.normalize import display, typed

MAX_CODE_LENGTH = 128
#: Codes shorter than this show no character at all.
HINT_MIN_LENGTH = 8
HINT_MAX_CHARS = 4
#: What a code without a hint looks like.
FULL_MASK = "••••••••"


class SealedCode(msgspec.Struct, frozen=True):
    digest: str
    secret: bytes
    last4: str
    has_pin: bool


#: Between the card number and the PIN in a scan payload (the member page's QR code).
SCAN_SEPARATOR = "#"
MAX_SCAN_SPLITS = 4


def scan_payload(number: str, pin: str | None) -> str:
    """What the member page's QR code carries: the card number, and ``#`` and the PIN when the code has
    one, so that one scan at the redeem page gives both (:func:`scan_parts` reads it back)."""
    return f"{number}{SCAN_SEPARATOR}{pin}" if pin else number


def scan_parts(text: str) -> list[tuple[str, str]]:
    """The (number, PIN) readings of a scanned ``number#PIN`` payload, one per ``#`` (a number may contain
    one itself), left to right; empty when there is no separator."""
    out: list[tuple[str, str]] = []
    start = 0
    while len(out) < MAX_SCAN_SPLITS:
        at = text.find(SCAN_SEPARATOR, start)
        if at < 0:
            break
        number, pin = text[:at].strip(), text[at + 1 :].strip()
        if number and pin:
            out.append((number, pin))
        start = at + 1
    return out


def clean(number: str) -> str:
    """The canonical form of a card number (the form its digest is computed on)."""
    return typed(number)


def hint(number: str) -> str:
    """The characters a mask may show: the last ``len // 3`` (at most 4) of the canonical code, or nothing
    for a code shorter than :data:`HINT_MIN_LENGTH`."""
    key = typed(number)
    if len(key) < HINT_MIN_LENGTH:
        return ""
    return key[-min(HINT_MAX_CHARS, len(key) // 3) :]


def digest_of(cipher: TenantCipher, number: str) -> str:
    """Lookup key of a card number (HMAC-SHA256 of its canonical form under the tenant's key)."""
    return cipher.digest(clean(number).encode("utf-8"))


def seal(cipher: TenantCipher, number: str, pin: str | None = None) -> SealedCode:
    shown = display(number)
    digest = digest_of(cipher, shown)
    payload = msgspec.msgpack.encode([shown, display(pin) if pin is not None else None])
    # The digest is the associated data: a ciphertext moved to another row no longer decrypts.
    return SealedCode(digest, cipher.encrypt(payload, aad=digest.encode()), hint(shown), pin is not None)


def unseal(cipher: TenantCipher, digest: str, secret: bytes) -> tuple[str, str | None]:
    number, pin = msgspec.msgpack.decode(cipher.decrypt(secret, aad=digest.encode()))
    return number, pin


def masked(last4: str | None) -> str:
    """A code as screens and the API show it: ``•••• 89`` (the stored hint), or ``••••••••`` without one."""
    return "•••• " + last4 if last4 else FULL_MASK


def masked_code(number: str) -> str:
    """The mask of a plaintext code (what :func:`masked` shows once it is stored)."""
    return masked(hint(number))
