"""One normaliser for what people type or paste: card numbers, PINs and phone numbers.

Text pasted from Chinese documents carries full-width digits and letters (``１２３４``, ``ＡＢＣ``), full-width
spaces (U+3000) and dashes, and zero-width characters from web pages and chat apps. :func:`typed` turns
all of it into one canonical form — Unicode NFKC (full-width → ASCII), then every whitespace, zero-width
and dash-like separator removed; case is kept (codes and PINs may be case-sensitive). Every path that
stores or looks up a code, PIN or phone (import, generation, redemption, claims, member lookups) goes
through here, and lookup digests are computed on the result.
"""

from __future__ import annotations

import re
import unicodedata

_BLANKS = "\\s\u00ad\u180e\u200b\u200c\u200d\u2060\ufeff"  # whitespace, soft hyphen, zero-width characters
_DASHES = "\\-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"  # hyphens, dashes, minus signs
_INVISIBLE = re.compile(f"[{_BLANKS}]+")
_SEPARATORS = re.compile(f"[{_BLANKS}{_DASHES}]+")


def display(raw: object) -> str:
    """NFKC without spaces or invisible characters: how a code or PIN is kept for delivery (dashes stay)."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", str(raw)))


def typed(raw: object) -> str:
    """The canonical form of a typed code, PIN or phone: NFKC, no spaces, dashes or invisible characters."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", str(raw)))
