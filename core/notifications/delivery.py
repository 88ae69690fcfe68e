"""Which notifier delivers a channel, with what config; the delivery call; and what its result means.

Core names no connector and reads none of their settings. The plugin host builds the platform's connector
accounts: each installed connector turns the operator's connector settings it understands into its config
(``platform_config``; e.g. ``smtp_email`` from ``KAQUAN_SMTP_HOST``). A channel goes to the first account
(by connector id) of a notifier that delivers it, else to ``KAQUAN_FALLBACK_NOTIFIER`` (the built-in
``log_notifier``, which logs the body only in embedded mode, where the log is the operator's own terminal).
The job environment can pin routes instead (``JobEnv.notifier_routes``).

A tenant's own notifier accounts come first: when the tenant has an active notifier account whose connector
delivers the channel (its oldest one), the notification goes through it, with its sealed settings, through
:func:`core.connectors.calls.bind_account` (timeout, contract check, health on the account). A connector
that raises, hangs or answers nonsense fails that delivery only, as a retryable ``failed`` result.
Only when the tenant has no such account does the platform's routing above apply.

:func:`send` delivers and describes the outcome once for every job that sends (invites, reminders, member
SMS): raise to retry a retryable failure, log delivered / not delivered with the recipient masked.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from core.connectors.calls import AccountUnavailable, BoundAccount, ConnectorCallFailed, bind_account
from core.connectors.services import notifier_account_for
from core.db.base import utcnow
from core.jobs.context import JobEnv
from plugins import ConnectorContext, DeliveryResult, Notification, mask_recipient

log = structlog.get_logger("kaquan.notifications")

HTTP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
#: Seconds a tenant's notifier account may take for one message.
SEND_TIMEOUT = 10.0


def route(env: JobEnv, channel: str) -> str:
    """The connector id that delivers ``channel``."""
    fallback = env.settings.fallback_notifier
    if env.notifier_routes is not None:
        return env.notifier_routes.get(channel, env.notifier_routes.get("*", fallback))
    for connector_id, account in env.connector_accounts.items():
        info = account.connector
        if connector_id != fallback and info.kind == "notifier" and channel in info.capabilities:
            return connector_id
    return fallback


def account_config(env: JobEnv, connector_id: str) -> Mapping[str, Any]:
    """The config of the account ``connector_id`` delivers through (empty: the connector's defaults)."""
    account = env.connector_accounts.get(connector_id)
    return account.config if account is not None else {}


async def tenant_account(
    env: JobEnv, session: AsyncSession, channel: str, *, held: bool
) -> BoundAccount | None:
    """The tenant's own notifier account for ``channel``, bound and ready to call (``None``: none).

    ``held``: ``session`` is the caller's open transaction, so the call's health is written after it ends.
    """
    account = await notifier_account_for(session, env.plugins, channel)
    if account is None:
        return None
    cipher = await env.keys.cipher(session)
    try:
        return await bind_account(
            session,
            cipher,
            env.plugins,
            account.id,
            db=env.db(),
            embedded=env.embedded,
            kind="notifier",
            health_session=session if held else None,
        )
    except AccountUnavailable:
        return None


async def _through_account(bound: BoundAccount, notification: Notification) -> DeliveryResult:
    try:
        result: DeliveryResult = await bound.call("send", notification, expect=DeliveryResult, limit=SEND_TIMEOUT)
    except ConnectorCallFailed as exc:
        return DeliveryResult(status="failed", detail=f"{exc.reason}: {exc.detail}"[:500], retryable=exc.retryable)
    return result


async def deliver(
    env: JobEnv,
    tenant_id: uuid.UUID | None,
    notification: Notification,
    session: AsyncSession | None = None,
) -> tuple[str, DeliveryResult]:
    """Send ``notification`` through the tenant's notifier account for its channel, else the platform's
    routed notifier; returns (connector id, result).

    ``session`` is the caller's transaction when it holds one (the account is read through it, and the
    account's health is written once it ends); otherwise a read-only session of the job's database.
    """
    if tenant_id is not None:
        if session is not None:
            bound = await tenant_account(env, session, notification.channel, held=True)
        else:
            async with env.db().sessionmaker() as own:
                bound = await tenant_account(env, own, notification.channel, held=False)
        if bound is not None:
            return bound.connector_id, await _through_account(bound, notification)
    connector_id = route(env, notification.channel)
    notifier = env.plugins.notifier(connector_id)
    if notification.channel not in notifier.info.capabilities:
        return connector_id, DeliveryResult(
            status="rejected", detail=f"{connector_id} does not deliver {notification.channel!r}"
        )
    config = env.plugins.connector_config(connector_id, account_config(env, connector_id))
    bound = log.bind(connector=connector_id, tenant_id=str(tenant_id) if tenant_id else None)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        ctx = ConnectorContext(
            tenant_id=tenant_id, config=config, http=http, log=bound, clock=utcnow, embedded=env.embedded
        )
        result = await notifier.send(ctx, notification)
    if not isinstance(result, DeliveryResult):
        raise TypeError(f"{connector_id}.send returned {type(result).__name__}, not DeliveryResult")
    return connector_id, result


@dataclass(frozen=True)
class Sent:
    """The outcome of one :func:`send`: the connector, its result, and what the logs say about it."""

    connector_id: str
    result: DeliveryResult
    fields: dict[str, Any]

    @property
    def retry(self) -> bool:
        """A failure worth another attempt (the job raises, so its claim rolls back and it runs again)."""
        return self.result.status == "failed" and self.result.retryable

    def raise_for_retry(self, error: type[Exception]) -> None:
        """Raise ``error`` (naming the connector and its reason) when the delivery should be retried."""
        if self.retry:
            raise error(f"{self.connector_id}: {self.result.detail}")

    def log(self, logger: Any, event: str, **extra: Any) -> None:
        """``<event>_delivered`` (info) when the provider accepted it, else ``<event>_not_delivered`` (warning,
        with the reason)."""
        if self.result.accepted:
            logger.info(f"{event}_delivered", **self.fields, **extra)
        else:
            logger.warning(f"{event}_not_delivered", detail=self.result.detail, **self.fields, **extra)


async def send(
    env: JobEnv,
    tenant_id: uuid.UUID | None,
    notification: Notification,
    *,
    session: AsyncSession | None = None,
    **fields: Any,
) -> Sent:
    """:func:`deliver`, with the log fields of the outcome (recipient masked, never the body) plus ``fields``.

    Pass ``session`` when the caller holds a transaction (see :func:`deliver`)."""
    connector_id, result = await deliver(env, tenant_id, notification, session)
    described = {
        "connector": connector_id,
        "channel": notification.channel,
        "template": notification.template,
        "to": mask_recipient(notification.to),
        "status": result.status,
        "reference": notification.reference,
    }
    return Sent(connector_id, result, {**described, **fields})
