"""Code length and charset rules a product sets for its card numbers and PINs.

Checked on the canonical form (:func:`core.normalize.typed`) by the import, and by generation (whose
Crockford codes must fit the product's rules). Defaults: 4–64 printable characters for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.normalize import typed

CHARSETS = ("digits", "alnum", "crockford", "printable")
DEFAULT_MIN_LENGTH, DEFAULT_MAX_LENGTH, DEFAULT_CHARSET = 4, 64, "printable"
#: The bounds a product may set (a code is never longer than the vault's 128 characters).
LENGTH_FLOOR, LENGTH_CEILING = 1, 128
_CROCKFORD = frozenset("0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghjkmnpqrstvwxyz")
_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
#: (English, Chinese) descriptions, for messages and the console.
CHARSET_LABELS: dict[str, tuple[str, str]] = {
    "digits": ("digits 0–9", "数字 0–9"),
    "alnum": ("letters A–Z and digits", "英文字母和数字"),
    "crockford": ("Crockford base32 (digits and letters except I, L, O, U)", "Crockford base32（数字及除 I、L、O、U 外的字母）"),
    "printable": ("any printable character", "任意可打印字符"),
}
RULE_FIELDS = ("code_min_length", "code_max_length", "code_charset", "pin_min_length", "pin_max_length", "pin_charset")


def charset_ok(text: str, charset: str) -> bool:
    """Whether every character of ``text`` belongs to ``charset``."""
    if charset == "digits":
        return text.isascii() and text.isdigit()
    if charset == "alnum":
        return all(c in _ALNUM for c in text)
    if charset == "crockford":
        return all(c in _CROCKFORD for c in text)
    return text.isprintable()


@dataclass(frozen=True)
class PartRule:
    """The rule of one part (the card number or the PIN)."""

    min_length: int = DEFAULT_MIN_LENGTH
    max_length: int = DEFAULT_MAX_LENGTH
    charset: str = DEFAULT_CHARSET

    def problem(self, value: str) -> tuple[str, dict[str, Any]] | None:
        """``(problem code, message parameters)`` when the canonical ``value`` breaks the rule, else ``None``."""
        key = typed(value)
        n = len(key)
        if n < self.min_length:
            return "too_short", {"length": n, "limit": self.min_length}
        if n > self.max_length:
            return "too_long", {"length": n, "limit": self.max_length}
        if not charset_ok(key, self.charset):
            en, zh = CHARSET_LABELS.get(self.charset, (self.charset, self.charset))
            return "bad_charset", {"charset_en": en, "charset_zh": zh}
        return None


@dataclass(frozen=True)
class CodeRules:
    """A product's rules for its card numbers and PINs."""

    number: PartRule = PartRule()
    pin: PartRule = PartRule()

    @classmethod
    def of(cls, product: Any) -> CodeRules:
        """The rules a product (model or Struct) carries; missing values fall back to the defaults."""

        def get(name: str, default: Any) -> Any:
            value = getattr(product, name, None)
            return default if value is None else value

        return cls(
            PartRule(get("code_min_length", DEFAULT_MIN_LENGTH), get("code_max_length", DEFAULT_MAX_LENGTH),
                     get("code_charset", DEFAULT_CHARSET)),
            PartRule(get("pin_min_length", DEFAULT_MIN_LENGTH), get("pin_max_length", DEFAULT_MAX_LENGTH),
                     get("pin_charset", DEFAULT_CHARSET)),
        )
