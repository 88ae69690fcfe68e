"""Webhook signatures: a receiver's check accepts kaquan's real signature and refuses tampering and replays."""

from __future__ import annotations

import hashlib
import hmac

from core.webhooks import signing

SECRET = "whsec_test-secret"
BODY = b'{"id":"0190","type":"stock.low","created_at":"2026-01-01T00:00:00+00:00","data":{"available":3}}'


def receiver_verify(secret: str, body: bytes, header: str, now: int, tolerance: int = 300) -> bool:
    """What a tenant's receiver does (the example in docs/api.md), written independently of kaquan's code."""
    items = dict(part.split("=", 1) for part in header.split(","))
    t = int(items["t"])
    if abs(now - t) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, items["v1"])


def test_the_header_is_t_and_v1_over_timestamp_dot_body() -> None:
    header = signing.signature_header(SECRET, BODY, timestamp=1_700_000_000)
    t, sigs = signing.parse_header(header)
    assert t == 1_700_000_000 and len(sigs) == 1
    assert sigs[0] == hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={sigs[0]}"


def test_a_receiver_accepts_the_real_signature() -> None:
    header = signing.signature_header(SECRET, BODY, timestamp=1_700_000_000)
    assert receiver_verify(SECRET, BODY, header, now=1_700_000_010)
    assert signing.verify(SECRET, BODY, header, now=1_700_000_010)


def test_a_tampered_body_is_refused() -> None:
    header = signing.signature_header(SECRET, BODY, timestamp=1_700_000_000)
    tampered = BODY.replace(b'"available":3', b'"available":300')
    assert not receiver_verify(SECRET, tampered, header, now=1_700_000_000)
    assert not signing.verify(SECRET, tampered, header, now=1_700_000_000)


def test_an_old_timestamp_is_refused_even_with_a_valid_signature() -> None:
    header = signing.signature_header(SECRET, BODY, timestamp=1_700_000_000)
    late = 1_700_000_000 + signing.DEFAULT_TOLERANCE_SECONDS + 1
    assert not receiver_verify(SECRET, BODY, header, now=late)
    assert not signing.verify(SECRET, BODY, header, now=late)
    assert signing.verify(SECRET, BODY, header, now=late, tolerance=3600)


def test_a_wrong_secret_a_changed_timestamp_or_a_malformed_header_is_refused() -> None:
    header = signing.signature_header(SECRET, BODY, timestamp=1_700_000_000)
    assert not signing.verify("whsec_other", BODY, header, now=1_700_000_000)
    moved = header.replace("t=1700000000", "t=1700000001")
    assert not signing.verify(SECRET, BODY, moved, now=1_700_000_000)
    for bad in ("", "v1=abc", "t=1700000000", "t=x,v1=abc", "garbage"):
        assert not signing.verify(SECRET, BODY, bad, now=1_700_000_000)


def test_several_v1_signatures_are_accepted_if_one_matches() -> None:
    good = signing.signature_header(SECRET, BODY, timestamp=1_700_000_000)
    both = good + ",v1=" + "0" * 64
    assert signing.verify(SECRET, BODY, both, now=1_700_000_000)


def test_generated_secrets_are_long_and_distinct() -> None:
    a, b = signing.generate_secret(), signing.generate_secret()
    assert a != b and a.startswith("whsec_") and len(a) >= 40


def test_the_receiver_example_in_the_api_guide_verifies_a_real_signature() -> None:
    """The Python example in docs/api.md (Webhooks) runs and agrees with kaquan's signatures."""
    import re
    from pathlib import Path

    guide = Path(__file__).resolve().parents[2] / "docs" / "api.md"
    section = guide.read_text(encoding="utf-8").split("## Webhooks", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "docs/api.md has no Python receiver example under Webhooks"
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), "docs/api.md", "exec"), namespace)
    verify = namespace["verify"]
    header = signing.signature_header(SECRET, BODY, timestamp=1_700_000_000)
    assert verify(SECRET, BODY, header, now=1_700_000_005)  # type: ignore[operator]
    assert not verify(SECRET, BODY + b"x", header, now=1_700_000_005)  # type: ignore[operator]
    assert not verify(SECRET, BODY, header, now=1_700_000_000 + 301)  # type: ignore[operator]
