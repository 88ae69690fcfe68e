"""The built-in ``sms_gateway`` notifier: sends SMS through a generic HTTP SMS gateway.

It POSTs ``{"to": ..., "text": ..., "reference": ...}`` as JSON to the configured URL with the API key in a
header (``X-Api-Key`` by default, a marked secret); ``reference`` and the ``Idempotency-Key`` header carry the
message's ``reference`` (its idempotency key), the same on every retry. A 2xx answer is ``sent`` (``queued`` for 202), with the
gateway's ``id``/``message_id`` when it returns one; 4xx (except 408/429) is ``rejected``; 408, 429, 5xx and
network errors are ``failed`` and retryable; a gateway that dedupes on the key never sends a retried message
twice. The text carries codes: it is never logged.

Chinese SMS services send only approved templates with a signature: ``templates`` maps kaquan's template
names (``Notification.template``: ``claim_otp``, ``grant_codes``, ``invite`` …) to the provider's template
ids; a message whose template is mapped also carries ``"template_id"`` and its ``"params"`` (the values
the template is filled with), so the gateway can send the approved template instead of the text. Platform-wide it is set up by ``KAQUAN_SMS_GATEWAY_URL``
(with ``KAQUAN_SMS_GATEWAY_KEY``), and the host then routes SMS to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import msgspec

from plugins import (
    ConnectorContext,
    ConnectorInfo,
    DeliveryResult,
    Notification,
    Secret,
    hookimpl,
    mask_recipient,
)
from plugins.builtin._recipients import recipient_problem

RETRYABLE_STATUSES = frozenset({408, 425, 429})


class SmsGatewayConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The gateway endpoint, its API key and the header that carries it."""

    url: str = "http://127.0.0.1:9090/sms"
    api_key: Secret = ""
    key_header: str = "X-Api-Key"
    sender: str = ""
    timeout_seconds: float = 10.0
    #: kaquan template name → the provider's approved template id (e.g. ``{"claim_otp": "SMS_1234"}``).
    templates: dict[str, str] = msgspec.field(default_factory=dict)


class SmsGatewayNotifier:
    """One HTTP POST per message."""

    info = ConnectorInfo(
        id="sms_gateway",
        kind="notifier",
        display_name="SMS (HTTP gateway)",
        display_name_zh="短信（HTTP 网关）",
        description="Sends SMS by POSTing JSON {to, text, reference} to an HTTP SMS gateway.",
        description_zh="通过 HTTP 短信网关发送短信（POST 手机号、内容和流水号）。",
        config=SmsGatewayConfig,
        capabilities=frozenset({"sms"}),
    )

    def platform_config(self, settings: Mapping[str, Any]) -> dict[str, Any] | None:
        """The platform's gateway account: ``sms_gateway_url`` (required) and ``sms_gateway_key``."""
        if not settings.get("sms_gateway_url"):
            return None
        return {"url": settings["sms_gateway_url"], "api_key": settings.get("sms_gateway_key", "")}

    async def send(self, ctx: ConnectorContext, message: Notification) -> DeliveryResult:
        if message.channel != "sms":
            return DeliveryResult(status="rejected", detail=f"unsupported channel {message.channel!r}")
        problem = recipient_problem("sms", message.to)
        if problem:
            return DeliveryResult(status="rejected", detail=problem)
        config = ctx.config if isinstance(ctx.config, SmsGatewayConfig) else SmsGatewayConfig()
        to = message.to.replace(" ", "").replace("-", "")
        payload: dict[str, Any] = {"to": to, "text": message.body, "reference": message.reference}
        if config.sender:
            payload["sender"] = config.sender
        template_id = config.templates.get(message.template) if message.template else None
        if template_id:
            payload["template_id"] = template_id
            payload["params"] = dict(message.params)
        headers = {"Accept": "application/json", "Idempotency-Key": message.reference}
        if config.api_key:
            headers[config.key_header] = config.api_key
        masked = mask_recipient(to)
        try:
            response = await ctx.http.post(
                config.url, json=payload, headers=headers, timeout=config.timeout_seconds
            )
        except httpx.HTTPError as exc:
            ctx.log.warning("sms_gateway_unreachable", to=masked, error=type(exc).__name__)
            return DeliveryResult(
                status="failed", detail=f"gateway unreachable: {type(exc).__name__}", retryable=True
            )
        status = response.status_code
        if 200 <= status < 300:
            message_id = _message_id(response)
            ctx.log.info("sms_gateway_sent", to=masked, status=status, message_id=message_id)
            return DeliveryResult(
                status="queued" if status == 202 else "sent", provider_message_id=message_id
            )
        retryable = status >= 500 or status in RETRYABLE_STATUSES
        ctx.log.warning("sms_gateway_refused", to=masked, status=status)
        return DeliveryResult(
            status="failed" if retryable else "rejected",
            detail=f"gateway answered HTTP {status}",
            retryable=retryable,
        )


def _message_id(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    if isinstance(data, dict):
        for name in ("id", "message_id", "messageId"):
            value = data.get(name)
            if isinstance(value, str | int):
                return str(value)[:200]
    return None


CONNECTOR = SmsGatewayNotifier()


@hookimpl
def kaquan_connectors() -> list[SmsGatewayNotifier]:
    return [CONNECTOR]
