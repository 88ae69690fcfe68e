"""Which notifier delivers a channel, with what config, and the delivery call itself.

Routes come from settings unless the job environment overrides them: e-mail goes through the built-in
``smtp_email`` connector when ``KAQUAN_SMTP_HOST`` is set, otherwise (embedded mode, development)
through ``log_notifier``; SMS goes through ``sms_gateway`` when ``KAQUAN_SMS_GATEWAY_URL`` is set; other
channels fall back to ``log_notifier``. The log notifier may log the
body (an invite link) only in embedded mode, where the log is the operator's own terminal.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import msgspec
import structlog

from core.db.base import utcnow
from core.jobs.context import JobEnv
from core.settings import Settings
from plugins import ConnectorContext, DeliveryResult, Notification

log = structlog.get_logger("kaquan.notifications")

FALLBACK_NOTIFIER = "log_notifier"
HTTP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def default_routes(settings: Settings) -> dict[str, str]:
    """Channel → connector id, from settings."""
    return {
        "email": "smtp_email" if settings.smtp_host else FALLBACK_NOTIFIER,
        "sms": "sms_gateway" if settings.sms_gateway_url else FALLBACK_NOTIFIER,
    }


def builtin_config(connector_id: str, settings: Settings, embedded: bool) -> dict[str, Any]:
    """Platform-level config of a notifier (built-ins from settings; others use their defaults)."""
    if connector_id == "smtp_email":
        return {"host": settings.smtp_host, "port": settings.smtp_port, "sender": settings.smtp_sender}
    if connector_id == "sms_gateway":
        return {"url": settings.sms_gateway_url, "api_key": settings.sms_gateway_key}
    if connector_id == "log_notifier":
        return {"include_body": embedded}
    return {}


def route(env: JobEnv, channel: str) -> str:
    routes = env.notifier_routes if env.notifier_routes is not None else default_routes(env.settings)
    return routes.get(channel, routes.get("*", FALLBACK_NOTIFIER))


async def deliver(
    env: JobEnv, tenant_id: uuid.UUID | None, notification: Notification
) -> tuple[str, DeliveryResult]:
    """Send ``notification`` through the routed notifier; returns (connector id, result)."""
    connector_id = route(env, notification.channel)
    notifier = env.plugins.notifier(connector_id)
    if notification.channel not in notifier.info.capabilities:
        return connector_id, DeliveryResult(
            status="rejected", detail=f"{connector_id} does not deliver {notification.channel!r}"
        )
    config = msgspec.convert(builtin_config(connector_id, env.settings, env.embedded), notifier.info.config)
    bound = log.bind(connector=connector_id, tenant_id=str(tenant_id) if tenant_id else None)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        ctx = ConnectorContext(
            tenant_id=tenant_id, config=config, http=http, log=bound, clock=utcnow, embedded=env.embedded
        )
        result = await notifier.send(ctx, notification)
    if not isinstance(result, DeliveryResult):
        raise TypeError(f"{connector_id}.send returned {type(result).__name__}, not DeliveryResult")
    return connector_id, result
