"""``send_notification``: the job behind every outbox notification (e.g. the user invite).

Payload (see ``tenants.users.create_invited_user``): ``channel``, ``to``, ``template``, ``params`` and
``sealed_params`` — values encrypted with the tenant's data key (AAD ``notification``), hex encoded,
so a credential such as the invite link never travels or rests in plaintext in the broker. They are
decrypted here, just before rendering and delivery. Idempotent on the outbox business key, which is also
the ``Notification.reference`` the provider dedupes on: a retry after a failed commit re-sends with the same
key. The outcome is logged only after the claim has committed.
"""

from __future__ import annotations

from typing import Any

import structlog

from core.db.context import require_tenant
from core.jobs.context import current_env, current_message
from core.jobs.idempotency import run_once
from core.jobs.registry import job
from core.notifications.delivery import send
from core.notifications.templates import render, template_params
from plugins import Notification
from tenants.models import Tenant

log = structlog.get_logger("kaquan.notifications")
SEALED_AAD = b"notification"


class DeliveryFailed(RuntimeError):
    """The notifier could not deliver now; dramatiq retries the job with backoff."""


@job("send_notification", queue="notifications", max_retries=8, min_backoff_ms=10_000)
async def send_notification(
    channel: str,
    to: str,
    template: str,
    params: dict[str, Any] | None = None,
    sealed_params: dict[str, str] | None = None,
    locale: str | None = None,
) -> None:
    """Render ``template`` for ``to`` and deliver it once through the routed notifier."""
    env = current_env()
    message = current_message()
    tenant_id = require_tenant()
    key = message.idempotency_key if message else f"send_notification:{template}:{to}"
    async with env.db().transaction() as session:
        if not await run_once(session, key, "send_notification"):
            log.info("notification_already_sent", reference=key)
            return
        tenant = await session.get(Tenant, tenant_id)
        if tenant is None:
            raise LookupError(f"tenant {tenant_id} not found")
        cipher = await env.keys.cipher(session)
        opened = {
            name: cipher.decrypt(bytes.fromhex(value), aad=SEALED_AAD).decode("utf-8")
            for name, value in (sealed_params or {}).items()
        }
        lang = locale or tenant.locale
        values = {**(params or {}), **opened, "tenant_name": tenant.name}
        subject, body = render(template, lang, values)
        notification = Notification(
            channel=channel,
            to=to,
            subject=subject,
            body=body,
            locale=lang,
            template=template,
            reference=key,
            params=template_params(values),
        )
        sent = await send(env, tenant_id, notification, session=session)
        sent.raise_for_retry(DeliveryFailed)  # rolls the claim back: retried
    # Logged once the claim has committed; a failed commit is retried with the same reference.
    sent.log(log, "notification", recorded=True)
