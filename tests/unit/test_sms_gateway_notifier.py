"""The ``sms_gateway`` notifier passes the conformance kit and maps gateway answers to delivery results."""

from __future__ import annotations

import json

import httpx

from plugins import Notification
from plugins.builtin.sms_gateway_notifier import SmsGatewayConfig, SmsGatewayNotifier
from plugins.testing import notifier_conformance, run_send

TestSmsGatewayConformance = notifier_conformance(SmsGatewayNotifier(), entry_point="sms_gateway_notifier")

CONFIG = SmsGatewayConfig(url="https://sms.example.test/v1/send", api_key="key-123", sender="SHOP")


def _sms(to: str = "+8613800138000", body: str = "卡号：CARD1234") -> Notification:
    return Notification(channel="sms", to=to, subject="", body=body, reference="deliver_grant:1")


def test_posts_json_with_the_key_header():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"message_id": "abc"})

    rec = run_send(SmsGatewayNotifier(), CONFIG, _sms(), handler=handler)
    assert rec.result is not None and rec.result.status == "sent" and rec.result.provider_message_id == "abc"
    (req,) = seen
    assert req.method == "POST" and str(req.url) == CONFIG.url
    assert req.headers["X-Api-Key"] == "key-123"
    assert json.loads(req.content) == {
        "to": "+8613800138000",
        "text": "卡号：CARD1234",
        "reference": "deliver_grant:1",
        "sender": "SHOP",
    }
    assert "CARD1234" not in rec.log_text() and "key-123" not in rec.log_text()


def test_answers_map_to_results():
    cases = {
        202: ("queued", False),
        400: ("rejected", False),
        401: ("rejected", False),
        429: ("failed", True),
        500: ("failed", True),
        503: ("failed", True),
    }
    for status, (expected, retryable) in cases.items():
        rec = run_send(SmsGatewayNotifier(), CONFIG, _sms(), handler=lambda r, s=status: httpx.Response(s))
        assert rec.result is not None, status
        assert (rec.result.status, rec.result.retryable) == (expected, retryable), status


def test_unreachable_gateway_is_a_retryable_failure():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    rec = run_send(SmsGatewayNotifier(), CONFIG, _sms(), handler=handler)
    assert rec.error is None and rec.result is not None
    assert rec.result.status == "failed" and rec.result.retryable


def test_email_and_bad_numbers_are_rejected_without_a_request():
    seen: list[httpx.Request] = []
    for message in (
        Notification(channel="email", to="a@example.com", subject="s", body="b"),
        _sms(to="call me"),
    ):
        rec = run_send(
            SmsGatewayNotifier(), CONFIG, message, handler=lambda r: seen.append(r) or httpx.Response(200)
        )
        assert rec.result is not None and rec.result.status == "rejected"
    assert seen == []


def test_a_mapped_template_sends_the_providers_template_id_and_params():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": 7})

    config = SmsGatewayConfig(url=CONFIG.url, api_key="key-123", sender="SHOP", templates={"claim_otp": "SMS_88"})
    message = Notification(
        channel="sms", to="+8613800138000", subject="", body="【SHOP】您的验证码为 123456", reference="otp:1",
        template="claim_otp", params={"code": "123456", "minutes": "10"},
    )
    rec = run_send(SmsGatewayNotifier(), config, message, handler=handler)
    assert rec.result is not None and rec.result.status == "sent"
    body = json.loads(seen[0].content)
    assert body["template_id"] == "SMS_88" and body["params"] == {"code": "123456", "minutes": "10"}
    assert "123456" not in rec.log_text()
    unmapped = Notification(channel="sms", to="+8613800138000", subject="", body="hi", reference="r", template="invite")
    run_send(SmsGatewayNotifier(), config, unmapped, handler=handler)
    assert "template_id" not in json.loads(seen[1].content)
