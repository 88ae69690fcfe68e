"""Codes the platform generates: Crockford base32 (no I L O U), a mod-37 check symbol, ≥ 80 random bits.

A pattern places random symbols where it has ``#`` and keeps every other character (prefix, dashes):
``"KQ-####-####-####-####"`` gives 16 random symbols = 80 bits. The check symbol is appended and
covers the random symbols and the literal letters/digits alike, so any single wrong character and any
swap of two adjacent characters is detected (37 is prime and larger than the alphabet).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CHECK_SYMBOLS = ALPHABET + "*~$=U"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
# Crockford decoding aliases: people type O for 0 and I/L for 1.
_ALIASES = {"O": "0", "I": "1", "L": "1"}
MIN_RANDOM_SYMBOLS = 16  # 16 × 5 bits = 80 bits
DEFAULT_PATTERN = "####-####-####-####"


class PatternError(ValueError):
    """A generation pattern that cannot give enough randomness or has unusable characters."""


def normalize(code: str) -> str:
    """Upper-case, drop separators and map Crockford aliases (what a person or scanner typed)."""
    out = []
    for ch in code.upper():
        if ch in "- \t":
            continue
        out.append(_ALIASES.get(ch, ch))
    return "".join(out)


_TO_STD = str.maketrans(ALPHABET, "0123456789abcdefghijklmnopqrstuv")


def _check(flat: str) -> str:
    # The payload read as a base-32 number, mod 37 (Crockford's check), computed in C by int().
    return CHECK_SYMBOLS[int(flat.translate(_TO_STD), 32) % 37]


def check_symbol(payload: str) -> str:
    """The mod-37 check symbol of the payload's base32 symbols (separators ignored)."""
    flat = normalize(payload)
    bad = set(flat) - _VALUE.keys()
    if bad or not flat:
        raise ValueError(f"characters {sorted(bad)!r} are not Crockford base32")
    return _check(flat)


def is_valid(code: str) -> bool:
    """Whether the last symbol is the right check symbol for the rest."""
    flat = normalize(code)
    if len(flat) < 2:
        return False
    try:
        return check_symbol(flat[:-1]) == flat[-1]
    except ValueError:
        return False


def validate_pattern(pattern: str) -> int:
    """Return the number of random symbols; refuse patterns with < 80 bits or non-base32 literals."""
    slots = pattern.count("#")
    if slots < MIN_RANDOM_SYMBOLS:
        raise PatternError(f"the pattern needs at least {MIN_RANDOM_SYMBOLS} '#' (80 random bits); it has {slots}")
    for ch in pattern:
        if ch != "#" and ch not in "- " and normalize(ch) not in _VALUE:
            raise PatternError(f"the pattern character {ch!r} is not Crockford base32, '-' or ' '")
    if len(pattern) > 64:
        raise PatternError("the pattern is longer than 64 characters")
    return slots


def _compile(full: str) -> list[tuple[str, str, int]]:
    """Split a pattern into pieces of (literal as shown, literal normalized, random-symbol count)."""
    pieces: list[tuple[str, str, int]] = []
    literal, slots = "", 0
    for ch in full:
        if ch == "#":
            slots += 1
            continue
        if slots:
            pieces.append((literal, normalize(literal), slots))
            literal, slots = "", 0
        literal += ch
    pieces.append((literal, normalize(literal), slots))
    return pieces


_FROM_RFC4648 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET.encode())


def _random_symbols(n: int, count: int = 1) -> list[str]:
    """``count`` strings of ``n`` uniformly random base32 symbols from the OS CSPRNG.

    Each 5 random bytes become 8 symbols through the C base32 encoder, re-lettered to Crockford's alphabet.
    """
    groups = (n + 7) // 8
    raw = base64.b32encode(secrets.token_bytes(5 * groups * count)).translate(_FROM_RFC4648).decode()
    width = 8 * groups
    return [raw[i * width:i * width + n] for i in range(count)]


def generate(pattern: str = DEFAULT_PATTERN, prefix: str = "") -> str:
    """One code: ``prefix + pattern`` with random symbols, then ``-`` and the check symbol."""
    full = (prefix + pattern).upper()
    slots = validate_pattern(full)
    return _make(_compile(full), _random_symbols(slots)[0])[0]


def _make(pieces: list[tuple[str, str, int]], rand: str) -> tuple[str, str]:
    """(code as shown, code normalized) for one draw of random symbols."""
    shown: list[str] = []
    flat: list[str] = []
    at = 0
    for literal, literal_flat, n in pieces:
        chunk = rand[at:at + n]
        shown += (literal, chunk)
        flat += (literal_flat, chunk)
        at += n
    body, key = "".join(shown), "".join(flat)
    check = _check(key)
    return f"{body}-{check}", key + check


def generate_unique(count: int, pattern: str = DEFAULT_PATTERN, prefix: str = "",
                    exclude: set[str] | None = None) -> Iterator[str]:
    """``count`` distinct codes (none in ``exclude``, compared normalized)."""
    full = (prefix + pattern).upper()
    slots = validate_pattern(full)
    pieces = _compile(full)
    seen: set[str] = {normalize(c) for c in exclude or ()}
    made = 0
    while made < count:
        for rand in _random_symbols(slots, min(count - made, 10_000)):
            code, key = _make(pieces, rand)
            if key in seen:
                continue  # astronomically rare at 80 bits, but duplicates must be impossible
            seen.add(key)
            made += 1
            yield code
