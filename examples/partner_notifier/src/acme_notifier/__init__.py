"""Acme SMS: an example kaquan notifier connector (SMS over a JSON HTTP API)."""

from __future__ import annotations

import re

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

_PHONE = re.compile(r"^\+?[0-9]{6,15}$")


class AcmeSmsConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Account settings a tenant enters when connecting Acme SMS (``api_key`` is stored encrypted)."""

    endpoint: str = "https://api.acme-sms.example/v1/messages"
    api_key: Secret = ""
    sender_id: str = "KAQUAN"


class AcmeSmsNotifier:
    """Posts ``{to, from, text, client_ref}`` to the Acme API with a bearer key.

    ``client_ref`` and the ``Idempotency-Key`` header carry ``message.reference`` (the same on every
    retry), so Acme never sends a retried message twice. 429 and 5xx are retryable failures.
    """

    info = ConnectorInfo(
        id="acme_sms",
        kind="notifier",
        display_name="Acme SMS",
        display_name_zh="Acme 短信",
        description="SMS delivery through the Acme SMS API (example partner connector).",
        description_zh="通过 Acme 短信接口发送短信（合作方连接器示例）。",
        config=AcmeSmsConfig,
        capabilities=frozenset({"sms"}),
    )

    async def send(self, ctx: ConnectorContext, message: Notification) -> DeliveryResult:
        if message.channel != "sms":
            return DeliveryResult(status="rejected", detail=f"unsupported channel {message.channel!r}")
        to = message.to.replace(" ", "").replace("-", "")
        if not _PHONE.match(to):
            return DeliveryResult(status="rejected", detail="not a phone number")
        config = ctx.config if isinstance(ctx.config, AcmeSmsConfig) else AcmeSmsConfig()
        text = f"{message.subject}\n{message.body}" if message.subject else message.body
        try:
            response = await ctx.http.post(
                config.endpoint,
                json={"to": to, "from": config.sender_id, "text": text, "client_ref": message.reference},
                headers={
                    "Authorization": f"Bearer {config.api_key}",
                    "Idempotency-Key": message.reference,
                },
            )
        except httpx.HTTPError as exc:
            ctx.log.warning("acme_sms_unreachable", error=type(exc).__name__)
            return DeliveryResult(status="failed", detail="Acme SMS unreachable", retryable=True)
        if response.status_code in (400, 404, 422):
            ctx.log.info("acme_sms_rejected", to=mask_recipient(to), status=response.status_code)
            return DeliveryResult(
                status="rejected", detail=f"Acme refused the message ({response.status_code})"
            )
        if response.status_code >= 300:
            ctx.log.warning("acme_sms_error", status=response.status_code)
            return DeliveryResult(
                status="failed",
                detail=f"Acme error {response.status_code}",
                retryable=response.status_code >= 500 or response.status_code == 429,
            )
        try:
            provider_id = str(msgspec.json.decode(response.content).get("id", "")) or None
        except (msgspec.DecodeError, AttributeError):
            provider_id = None
        ctx.log.info("acme_sms_sent", to=mask_recipient(to), provider_message_id=provider_id)
        return DeliveryResult(status="queued", provider_message_id=provider_id)


@hookimpl
def kaquan_connectors() -> list[AcmeSmsNotifier]:
    return [AcmeSmsNotifier()]
