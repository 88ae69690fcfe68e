"""The language of an answer: zh-CN by default, English on request. One rule for the API, the consoles and
H5, whether the request reached Litestar or is refused by middleware before it (raw ASGI scope).

The ``lang`` cookie (set by the console's language switch) wins when it names a supported locale; else the
first ``Accept-Language`` tag that is English or Chinese, in the order sent; else zh-CN.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from litestar import Request

LOCALES: tuple[str, ...] = ("zh-CN", "en")
DEFAULT_LOCALE = "zh-CN"
LOCALE_COOKIE = "lang"


def negotiate_locale(cookie: str | None, accept_language: str | None) -> str:
    """``zh-CN`` or ``en`` from the ``lang`` cookie's value and the ``Accept-Language`` header."""
    if cookie in LOCALES:
        return cookie
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("en"):
            return "en"
        if tag.startswith("zh"):
            return "zh-CN"
    return DEFAULT_LOCALE


def request_locale(request: Request[Any, Any, Any]) -> str:
    """The locale of a request Litestar has parsed."""
    return negotiate_locale(request.cookies.get(LOCALE_COOKIE), request.headers.get("accept-language"))


def _cookie(headers: Iterable[tuple[bytes, bytes]], name: str) -> str | None:
    """The value of cookie ``name`` in raw ``Cookie`` headers (the last one wins, as Litestar reads them)."""
    found: str | None = None
    for key, value in headers:
        if key != b"cookie":
            continue
        for pair in value.decode("latin-1").split(";"):
            cookie_name, sep, cookie_value = pair.partition("=")
            if sep and cookie_name.strip() == name:
                found = unquote(cookie_value.strip().strip('"'))
    return found


def scope_locale(scope: dict[str, Any]) -> str:
    """The locale from a raw ASGI scope (middleware answering before routing; header bytes of any encoding)."""
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    accept = next((v.decode("latin-1") for k, v in headers if k == b"accept-language"), None)
    return negotiate_locale(_cookie(headers, LOCALE_COOKIE), accept)
