"""The webhook URL policy (SSRF guard): https to public hosts; private, loopback and link-local targets and
``http://`` to them only in development (embedded mode or ``KAQUAN_WEBHOOK_ALLOW_PRIVATE``)."""

from __future__ import annotations

import msgspec
import pytest

from core.settings import load_settings
from core.webhooks.services import UrlRefused, allow_private, check_resolved, check_url

PRIVATE = [
    "https://127.0.0.1/h",
    "https://127.8.9.10/h",
    "https://10.0.0.5/h",
    "https://172.16.3.4/h",
    "https://192.168.1.1/h",
    "https://169.254.169.254/latest/meta-data/",
    "https://100.64.0.1/h",
    "https://0.0.0.0/h",
    "https://[::1]/h",
    "https://[fd00::1]/h",
    "https://[fe80::1]/h",
    "https://[::ffff:10.0.0.1]/h",
    "https://localhost/h",
    "https://api.localhost/h",
]


@pytest.mark.parametrize("url", PRIVATE)
def test_private_targets_are_refused_in_service_mode(url: str) -> None:
    with pytest.raises(UrlRefused):
        check_url(url, private_ok=False)
    assert check_url(url, private_ok=True) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/h",
        "http://93.184.216.34/h",
        "ftp://example.com/h",
        "https:///nohost",
        "https://u:p@example.com/h",
        "https://example.com/h#frag",
        "javascript:alert(1)",
        "https://[::1/h",
    ],
)
def test_malformed_plain_http_and_credentials_are_refused_even_in_development(url: str) -> None:
    with pytest.raises(UrlRefused):
        check_url(url, private_ok=True)


def test_https_public_hosts_and_http_to_localhost_in_development() -> None:
    assert check_url("  https://erp.example.com:8443/kaquan?x=1  ", private_ok=False) == (
        "https://erp.example.com:8443/kaquan?x=1"
    )
    assert check_url("http://localhost:8000/hook", private_ok=True) == "http://localhost:8000/hook"
    with pytest.raises(UrlRefused):
        check_url("http://localhost:8000/hook", private_ok=False)


def test_private_targets_are_allowed_in_embedded_mode_or_with_the_flag() -> None:
    embedded = load_settings(env={})
    service = load_settings(env={"KAQUAN_REDIS_URL": "redis://redis:6379/0"})
    flagged = load_settings(
        env={"KAQUAN_REDIS_URL": "redis://r:6379/0", "KAQUAN_WEBHOOK_ALLOW_PRIVATE": "true"}
    )
    assert allow_private(embedded) and not allow_private(service) and allow_private(flagged)
    assert not allow_private(msgspec.structs.replace(flagged, webhook_allow_private=False))


async def test_a_host_resolving_to_a_private_address_is_refused_before_posting() -> None:
    with pytest.raises(UrlRefused):
        await check_resolved("https://localhost:9/h", private_ok=False)
    await check_resolved("https://localhost:9/h", private_ok=True)
