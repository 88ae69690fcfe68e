"""The built-in ``log_notifier``: delivers a notification by writing it to the structured log.

It is the delivery used in embedded mode (no mail server). The recipient is always masked. The body
can hold a credential (an invite link), so it is logged only when the config says ``include_body``
*and* the host runs in embedded mode (a developer's own machine); in service mode logs are shipped
elsewhere and the body is never written. ``include_body`` is on by default, so an operator on a development
machine can copy an invite link. It has no platform account: it is the fallback for a channel no configured
notifier delivers. Registered through the ``kaquan`` entry-point group like any partner plugin, and it
imports only the partner SDK.
"""

from __future__ import annotations

import uuid

import msgspec

from plugins import (
    NOTIFICATION_CHANNELS,
    ConnectorContext,
    ConnectorInfo,
    DeliveryResult,
    Notification,
    hookimpl,
    mask_recipient,
)
from plugins.builtin._recipients import recipient_problem


class LogNotifierConfig(msgspec.Struct, frozen=True, kw_only=True):
    """``include_body``: also log the message body — in embedded mode only, whatever this says (it may hold
    an invite link)."""

    include_body: bool = True


class LogNotifier:
    """Writes each notification as one ``notification_logged`` log event."""

    info = ConnectorInfo(
        id="log_notifier",
        kind="notifier",
        display_name="Log (development)",
        display_name_zh="日志（开发用）",
        description="Writes notifications to the log; the default delivery in embedded mode.",
        description_zh="把通知写入日志，不真正发送；嵌入式模式下的默认方式，用于开发和试用。",
        config=LogNotifierConfig,
        capabilities=frozenset(NOTIFICATION_CHANNELS),
    )

    async def send(self, ctx: ConnectorContext, message: Notification) -> DeliveryResult:
        if message.channel not in self.info.capabilities:
            return DeliveryResult(status="rejected", detail=f"unsupported channel {message.channel!r}")
        problem = recipient_problem(message.channel, message.to)
        if problem:
            return DeliveryResult(status="rejected", detail=problem)
        config = ctx.config if isinstance(ctx.config, LogNotifierConfig) else LogNotifierConfig()
        fields: dict[str, object] = {
            "channel": message.channel,
            "to": mask_recipient(message.to),
            "subject": message.subject,
            "template": message.template,
            "reference": message.reference,
        }
        if config.include_body and ctx.embedded:
            fields["body"] = message.body
        ctx.log.info("notification_logged", **fields)
        return DeliveryResult(status="sent", provider_message_id=f"log-{uuid.uuid4().hex[:16]}")


CONNECTOR = LogNotifier()


@hookimpl
def kaquan_connectors() -> list[LogNotifier]:
    return [CONNECTOR]
