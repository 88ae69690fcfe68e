"""Checks of common values (e-mail, timezone, currency) with bilingual field errors."""

from __future__ import annotations

import zoneinfo
from functools import lru_cache
from typing import Annotated

import msgspec
from babel.numbers import list_currencies
from email_validator import EmailNotValidError, validate_email

from core.errors import FieldError, ValidationFailed

MONEY_MARK = "kaquan_money"
"""``Meta.extra`` key that marks a money field, so a refused value gets the "integer fen" hint."""
FEN_MAX = 10**12
"""The largest amount accepted anywhere: ¥10,000,000,000.00 (well inside int64)."""
_FEN_DOC = "Amount in integer fen (分), e.g. 2500 for ¥25.00; a decimal number or a string is refused"

Fen = Annotated[int, msgspec.Meta(ge=0, le=FEN_MAX, description=_FEN_DOC, extra={MONEY_MARK: True})]
"""Money: a non-negative integer number of fen (¥25.00 is ``2500``). Every money field uses it."""
PositiveFen = Annotated[int, msgspec.Meta(ge=1, le=FEN_MAX, description=_FEN_DOC, extra={MONEY_MARK: True})]
"""Money that must be at least one fen (an amount to spend)."""
FenDelta = Annotated[
    int,
    msgspec.Meta(
        ge=-FEN_MAX,
        le=FEN_MAX,
        description="Change of a balance in integer fen (分): negative when spent, positive when restored",
        extra={MONEY_MARK: True},
    ),
]
"""A signed change of an amount (ledger entries)."""


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_email(value: str, field: str = "email") -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValidationFailed(
            f"Invalid e-mail address: {value!r}",
            f"电子邮箱地址无效：{value!r}",
            errors=[FieldError(field=field, message=str(exc), code="invalid_email")],
        ) from None


def check_timezone(value: str, field: str = "timezone") -> str:
    if value not in _timezones():
        raise ValidationFailed(
            f"Unknown timezone: {value!r} (use an IANA name such as Asia/Shanghai)",
            f"未知时区：{value!r}（请使用 IANA 名称，例如 Asia/Shanghai）",
            errors=[FieldError(field=field, message="unknown IANA timezone", code="invalid_timezone")],
        )
    return value


def check_currency(value: str, field: str = "currency") -> str:
    if value.upper() not in list_currencies():
        raise ValidationFailed(
            f"Unknown currency: {value!r} (use an ISO 4217 code such as CNY)",
            f"未知币种：{value!r}（请使用 ISO 4217 代码，例如 CNY）",
            errors=[FieldError(field=field, message="unknown ISO 4217 currency", code="invalid_currency")],
        )
    return value.upper()
