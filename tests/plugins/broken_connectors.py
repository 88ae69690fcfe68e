"""Deliberately broken notifiers: each has exactly one defect the conformance kit must catch.

``GoodSms`` is a correct connector (the control: it passes the whole kit); every other class changes one
thing about it. ``tests/plugins/test_kit_catches_broken_connectors.py`` runs the kit on each.
"""

from __future__ import annotations

import logging
import re
import time

import httpx
import msgspec

from plugins import (
    ConnectorContext,
    ConnectorInfo,
    DeliveryResult,
    Notification,
    Secret,
    mask_recipient,
)

_PHONE = re.compile(r"^\+?[0-9]{6,15}$")
stdlib_log = logging.getLogger("broken_connectors")


class SmsConfig(msgspec.Struct, frozen=True, kw_only=True):
    endpoint: str = "https://sms.example.test/v1/messages"
    api_key: Secret = "test-key"


class GoodSms:
    """Correct: refuses bad input, maps answers to result kinds, forwards the idempotency key."""

    info = ConnectorInfo(
        id="good_sms", kind="notifier", display_name="Good SMS", config=SmsConfig, capabilities=frozenset({"sms"})
    )

    async def send(self, ctx: ConnectorContext, message: Notification) -> DeliveryResult:
        if message.channel != "sms":
            return DeliveryResult(status="rejected", detail="unsupported channel")
        to = message.to.strip()
        if not _PHONE.match(to):
            return DeliveryResult(status="rejected", detail="not a phone number")
        try:
            response = await self.post(ctx, message, to)
        except httpx.HTTPError as exc:
            ctx.log.warning("sms_unreachable", error=type(exc).__name__)
            return DeliveryResult(status="failed", detail="unreachable", retryable=True)
        return self.on_answer(ctx, response, to)

    def payload(self, message: Notification, to: str) -> dict[str, str]:
        return {"to": to, "text": message.body, "client_ref": message.reference}

    async def post(self, ctx: ConnectorContext, message: Notification, to: str) -> httpx.Response:
        return await ctx.http.post(
            ctx.config.endpoint,
            json=self.payload(message, to),
            headers={"Authorization": f"Bearer {ctx.config.api_key}"},
        )

    def on_answer(self, ctx: ConnectorContext, response: httpx.Response, to: str) -> DeliveryResult:
        status = response.status_code
        if 200 <= status < 300:
            ctx.log.info("sms_sent", to=mask_recipient(to))
            return DeliveryResult(status="queued")
        if status >= 500 or status == 429:
            return self.on_server_error(ctx, status)
        return DeliveryResult(status="rejected", detail=f"HTTP {status}")

    def on_server_error(self, ctx: ConnectorContext, status: int) -> DeliveryResult:
        ctx.log.warning("sms_provider_error", status=status)
        return DeliveryResult(status="failed", detail=f"HTTP {status}", retryable=True)


class ReportsServerErrorAsDelivered(GoodSms):
    """Defect: any answer that is not a 4xx counts as delivered (a 5xx too)."""

    def on_server_error(self, ctx: ConnectorContext, status: int) -> DeliveryResult:
        return DeliveryResult(status="sent")


class ServerErrorIsPermanent(GoodSms):
    """Defect: a 5xx is reported as a permanent rejection, so kaquan never retries it."""

    def on_server_error(self, ctx: ConnectorContext, status: int) -> DeliveryResult:
        return DeliveryResult(status="rejected", detail=f"HTTP {status}")


class DropsIdempotencyKey(GoodSms):
    """Defect: the provider never sees the idempotency key (``reference``), so a retry can send twice."""

    def payload(self, message: Notification, to: str) -> dict[str, str]:
        return {"to": to, "text": message.body}


class BlocksTheEventLoop(GoodSms):
    """Defect: a blocking call (``time.sleep``) inside ``async def send``."""

    async def post(self, ctx: ConnectorContext, message: Notification, to: str) -> httpx.Response:
        time.sleep(0.5)  # noqa: ASYNC251 -- the defect under test: blocks every other coroutine
        return await super().post(ctx, message, to)


class LogsApiKeyOnError(GoodSms):
    """Defect: the error path logs the API key through the context logger."""

    def on_server_error(self, ctx: ConnectorContext, status: int) -> DeliveryResult:
        ctx.log.error("sms_provider_error", status=status, api_key=ctx.config.api_key)
        return DeliveryResult(status="failed", detail=f"HTTP {status}", retryable=True)


class LogsApiKeyWithStdlibLogging(GoodSms):
    """Defect: the time-out path logs the request headers (with the key) through stdlib ``logging``."""

    async def post(self, ctx: ConnectorContext, message: Notification, to: str) -> httpx.Response:
        try:
            return await super().post(ctx, message, to)
        except httpx.TimeoutException:
            stdlib_log.warning("timed out; headers were Authorization: Bearer %s", ctx.config.api_key)
            raise
