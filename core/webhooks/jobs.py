"""Webhook jobs: fan an event out to subscriptions, make one delivery attempt, requeue stalled deliveries.

``deliver_webhook`` holds no transaction while it waits for the receiver: it claims the attempt and
commits, POSTs, then records the outcome in a second transaction. The secret is decrypted in memory;
job messages carry only the delivery id and the attempt number.
"""

from __future__ import annotations

import uuid

from core.jobs.context import current_env
from core.jobs.registry import job
from core.webhooks import services


@job(services.FANOUT_ACTOR, max_retries=10)
async def fan_out_webhooks(event_id: str) -> None:
    """Create the deliveries of one event and queue their first attempts (idempotent)."""
    async with current_env().db().transaction() as session:
        await services.fan_out(session, uuid.UUID(event_id))


@job(
    services.DELIVER_ACTOR,
    max_retries=5,
    min_backoff_ms=10_000,
    max_backoff_ms=600_000,
    time_limit_ms=120_000,
)
async def deliver_webhook(delivery_id: str, attempt: int) -> None:
    """Attempt ``attempt`` of a delivery; a finished, unknown or already taken attempt does nothing."""
    env = current_env()
    db = env.db()
    async with db.transaction() as session:
        cipher = await env.keys.cipher(session)
        plan = await services.claim_attempt(session, cipher, uuid.UUID(delivery_id), attempt)
    if plan is None:
        return
    outcome = await services.post(plan, private_ok=services.allow_private(env.settings))
    async with db.transaction() as session:
        await services.record_attempt(session, plan, outcome)


@job("sweep_webhook_deliveries", queue="maintenance", max_retries=3)
async def sweep_webhook_deliveries() -> None:
    """Queue again the attempts of pending deliveries whose message was lost or whose worker crashed."""
    async with current_env().db().transaction() as session:
        await services.requeue_stalled(session)
