"""Test send (发送测试): one signed ``webhook.test`` event POSTed to one endpoint now, through the same signing,
URL checks and delivery code as real events (:func:`core.webhooks.services.post`), and recorded like them.

Three short transactions, none held while the receiver answers: (1) write the test event (type
``webhook.test``, never fanned out to other endpoints) and its delivery, taken as attempt 1 of 1; (2) POST it;
(3) record the outcome in the delivery log (no retries: a test is sent once). A paused endpoint may be tested.
"""

from __future__ import annotations

import time
import uuid

from core.audit.services import record
from core.db.base import utcnow
from core.db.ids import new_id
from core.events.models import Event
from core.events.services import TEST_EVENT
from core.kernel import Kernel
from core.webhooks.models import WebhookDelivery
from core.webhooks.schemas import WebhookTestResult
from core.webhooks.services import (
    LEASE,
    AttemptPlan,
    event_body,
    get_subscription,
    open_secret,
    post,
    record_attempt,
)


async def _prepare(kernel: Kernel, subscription_id: uuid.UUID) -> AttemptPlan:
    async with kernel.db.transaction() as session:
        subscription = await get_subscription(session, subscription_id)  # 404 webhook_not_found
        cipher = await kernel.keys.cipher(session)
        now = utcnow()
        event = Event(
            id=new_id(),
            type=TEST_EVENT,
            object_id=str(subscription.id),
            data={"message": "This is a test event from kaquan. 这是一条测试事件。", "test": True},
            created_at=now,
        )
        delivery = WebhookDelivery(
            id=new_id(),
            subscription_id=subscription.id,
            event_id=event.id,
            event_type=TEST_EVENT,
            attempts=1,
            attempt_limit=1,
            last_attempt_at=now,
            locked_until=now + LEASE,
            next_attempt_at=now + LEASE,
        )
        session.add(event)
        await session.flush()
        session.add(delivery)
        record(
            session,
            "webhook.test_sent",
            "webhook",
            subscription.id,
            {"delivery_id": str(delivery.id), "url": subscription.url},
        )
        return AttemptPlan(
            delivery.id, event.id, 1, subscription.url, event_body(event), open_secret(cipher, subscription)
        )


async def send_test(kernel: Kernel, subscription_id: uuid.UUID, *, private_ok: bool) -> WebhookTestResult:
    """Send a test event to the endpoint now and say what happened (the tenant is the one in context)."""
    plan = await _prepare(kernel, subscription_id)
    started = time.monotonic()
    outcome = await post(plan, private_ok=private_ok)
    elapsed = int((time.monotonic() - started) * 1000)
    async with kernel.db.transaction() as session:
        await record_attempt(session, plan, outcome)
    return WebhookTestResult(
        delivery_id=plan.delivery_id,
        event_id=plan.event_id,
        success=outcome.success,
        status_code=outcome.status_code,
        error=outcome.error,
        duration_ms=elapsed,
        response_snippet=outcome.snippet,
    )
