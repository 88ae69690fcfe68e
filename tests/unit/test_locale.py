"""One locale rule for every surface: the ``lang`` cookie, else the first English or Chinese
``Accept-Language`` tag, else zh-CN — the same for a parsed request and a raw ASGI scope."""

from __future__ import annotations

import pytest

from core.http.locale import negotiate_locale, scope_locale


@pytest.mark.parametrize(
    ("cookie", "accept", "expected"),
    [
        (None, None, "zh-CN"),
        (None, "", "zh-CN"),
        (None, "en", "en"),
        (None, "en-US,en;q=0.9", "en"),
        (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        (None, "fr-FR, en;q=0.5", "en"),  # the first tag we support, not only the first tag
        (None, "fr-FR, de", "zh-CN"),
        ("en", "zh-CN", "en"),  # the console's language switch wins
        ("zh-CN", "en", "zh-CN"),
        ("de", "en", "en"),  # an unsupported cookie value is ignored
    ],
)
def test_negotiation(cookie: str | None, accept: str | None, expected: str) -> None:
    assert negotiate_locale(cookie, accept) == expected


def test_a_raw_scope_reads_the_cookie_and_the_header_alike() -> None:
    def scope(*headers: tuple[bytes, bytes]) -> dict[str, object]:
        return {"type": "http", "headers": list(headers)}

    assert scope_locale(scope()) == "zh-CN"
    assert scope_locale(scope((b"accept-language", b"fr, en;q=0.8"))) == "en"
    assert scope_locale(scope((b"cookie", b"kq_session=abc; lang=en"), (b"accept-language", b"zh-CN"))) == "en"
    assert scope_locale(scope((b"cookie", b"xlang=en"), (b"accept-language", b"zh"))) == "zh-CN"
    assert scope_locale(scope((b"cookie", b"lang=zh-CN"), (b"accept-language", b"en"))) == "zh-CN"
    assert scope_locale(scope((b"accept-language", "英语".encode()))) == "zh-CN"  # bytes of any encoding
