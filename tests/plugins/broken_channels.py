"""Channel connectors with one deliberate defect each (the sandbox with a flaw), for checking that the channel
conformance kit catches them. ``SoundSandbox`` is the control: the sandbox itself, as the kit runs it."""

from __future__ import annotations

import time
import uuid

import msgspec

from plugins import (
    CallbackRequest,
    CallResult,
    ChannelEvent,
    CodeDelivery,
    ConnectorContext,
    OrderPage,
    StockPush,
    StockPushResult,
)
from plugins.builtin import sandbox_channel as sandbox
from plugins.builtin.sandbox_channel import SandboxChannel, SandboxConfig


class SoundSandbox(SandboxChannel):
    """The sandbox as it is."""


class DeliversTwice(SandboxChannel):
    """Hands the codes over again on every retry (no idempotency by order line or reference)."""

    async def deliver_codes(self, ctx: ConnectorContext, delivery: CodeDelivery) -> CallResult:
        result = await super().deliver_codes(ctx, delivery)
        shop = sandbox.WORLD.shop(ctx.account_id)
        key = (delivery.order_id, delivery.line_id)
        if result.detail == "already delivered":
            shop.received[key] = [*shop.received[key], *delivery.codes]
        return result


class TimeoutIsRejected(SandboxChannel):
    """Reports a channel time-out on delivery as a permanent refusal."""

    async def deliver_codes(self, ctx: ConnectorContext, delivery: CodeDelivery) -> CallResult:
        result = await super().deliver_codes(ctx, delivery)
        if result.status == "failed":
            return CallResult(status="rejected", detail=result.detail)
        return result


class SkipsAfterAFailedPull(SandboxChannel):
    """On an outage, answers an empty page whose cursor moved on: the orders it should have read are lost."""

    async def pull_orders(self, ctx: ConnectorContext, cursor: str) -> OrderPage:
        try:
            return await super().pull_orders(ctx, cursor)
        except sandbox.SandboxUnavailable:
            position = int(cursor.partition(":")[2] or 0)
            return OrderPage(events=[], next_cursor=f"sbx:{position + 1}")


class TrustsAnyCallback(SandboxChannel):
    """Never checks the signature."""

    async def parse_callback(self, ctx: ConnectorContext, request: CallbackRequest) -> ChannelEvent:
        try:
            return msgspec.json.decode(request.body, type=ChannelEvent)
        except msgspec.DecodeError:
            return await super().parse_callback(ctx, request)


class NewMessageIdEachTime(SandboxChannel):
    """Makes up a message id per parse, so kaquan cannot drop a redelivered callback."""

    async def parse_callback(self, ctx: ConnectorContext, request: CallbackRequest) -> ChannelEvent:
        event = await super().parse_callback(ctx, request)
        return msgspec.structs.replace(event, message_id=uuid.uuid4().hex)


class LogsSecretOnBadCallback(SandboxChannel):
    """Logs the signing secret when a callback's signature does not match."""

    async def parse_callback(self, ctx: ConnectorContext, request: CallbackRequest) -> ChannelEvent:
        try:
            return await super().parse_callback(ctx, request)
        except Exception:
            config = ctx.config
            assert isinstance(config, SandboxConfig)
            ctx.log.warning("bad_callback", expected_key=config.signing_secret)
            raise


class BlocksTheEventLoop(SandboxChannel):
    """Waits for the channel with a blocking sleep."""

    async def push_stock(self, ctx: ConnectorContext, push: StockPush) -> StockPushResult:
        time.sleep(0.5)  # noqa: ASYNC251 - the defect under test
        return await super().push_stock(ctx, push)
