"""Amounts and dates as people type them in console forms, and back.

Money is never a float: an amount typed in yuan (``12.5``, ``1,200.00``, ``¥3``) is parsed with
:class:`decimal.Decimal` and becomes integer fen (``1250``); more than two decimals is refused, not rounded.
A date typed for a validity or an expiry means "valid through that day" in the tenant's timezone.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

from core.expiry import end_of_day, expiry_text, last_day

__all__ = [
    "AmountInvalid",
    "end_of_day",
    "fen_to_yuan",
    "format_expiry",
    "format_money",
    "last_day",
    "parse_day",
    "yuan_to_fen",
]

MAX_FEN = 10**12
_AMOUNT = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$")
_CURRENCY_SIGNS = {"CNY": "¥", "USD": "$", "EUR": "€", "HKD": "HK$", "JPY": "JP¥", "GBP": "£"}


class AmountInvalid(ValueError):
    """The text is not an amount of money with at most two decimals."""


def yuan_to_fen(text: str) -> int:
    """``"12.50"`` → ``1250``. Thousands separators and a leading ¥ are accepted; signs, exponents and a
    third decimal digit are not."""
    cleaned = text.strip().replace(",", "").replace("，", "").lstrip("¥￥").strip()
    if not _AMOUNT.match(cleaned):
        raise AmountInvalid(text)
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise AmountInvalid(text) from None
    fen = value * 100
    if fen != fen.to_integral_value() or fen > MAX_FEN:
        raise AmountInvalid(text)
    return int(fen)


def fen_to_yuan(fen: int | None) -> str:
    """``1250`` → ``"12.50"`` (the form value; integer arithmetic only)."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{whole}.{cents:02d}"


def format_money(fen: int | None, currency: str = "CNY") -> str:
    """``123450, "CNY"`` → ``"¥1,234.50"``; other currencies show their code after the amount."""
    if fen is None:
        return "—"
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    amount = f"{whole:,}.{cents:02d}"
    symbol = _CURRENCY_SIGNS.get(currency)
    if symbol:
        return f"{sign}{symbol}{amount}"
    return f"{sign}{amount} {currency}"


def parse_day(text: str) -> dt.date:
    """``YYYY-MM-DD`` (what ``<input type="date">`` sends); :class:`ValueError` otherwise."""
    return dt.date.fromisoformat(text.strip())


def day_filter(text: str | None) -> dt.date | None:
    """A list's ``YYYY-MM-DD`` filter (years 1970–2999, so a day either side exists in every zone); anything
    else is ignored (no filter)."""
    try:
        day = parse_day(text) if text else None
    except ValueError:
        return None
    return day if day is None or 1970 <= day.year <= 2999 else None


def format_expiry(value: dt.datetime | None, tz: str = "UTC") -> str:
    """An expiry as people read it (:func:`core.expiry.expiry_text`): ``2027-06-30`` for "valid through
    that day", ``2027-06-30 18:00`` for a time of day; a dash for none. The console and the H5 pages
    both render expiries with it (the ``expiry`` filter)."""
    return expiry_text(value, tz) or "—"
