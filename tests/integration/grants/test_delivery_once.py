"""One delivery effect per grant whatever the job system redelivers (issue 9, item 25).

The attempt is committed as ``sending`` before the notifier is called, with the grant's stable
idempotency key; when the commit recording the outcome fails (the database went away after the send),
the retry sends again with the same key, so a deduplicating provider delivers once, and the log says
``recorded: true`` only after the outcome committed.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from sqlalchemy import event, select, update
from sqlalchemy.exc import OperationalError

import core.grants.delivery as delivery_module
from core.db.context import tenant_context
from core.events.models import Event
from core.grants.delivery import GrantDeliveryFailed, deliver_grant, delivery_key
from core.grants.models import Grant, GrantDelivery
from core.grants.schemas import GrantRequest
from core.grants.services import create_grant
from core.jobs.context import JobEnv, MessageInfo, reset_job_context, set_job_context
from core.jobs.models import OutboxMessage
from core.plugin_host import load_plugins
from plugins import ConnectorContext, ConnectorInfo, DeliveryResult, Notification, hookimpl

FAR = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)


class NoConfig(msgspec.Struct, frozen=True):
    """The test provider takes no settings."""


@dataclass
class DedupingProvider:
    """A notifier in front of a provider that dedupes on the idempotency key (as SMS/e-mail APIs do)."""

    info = ConnectorInfo(
        id="dedupe_provider",
        kind="notifier",
        display_name="Deduping provider",
        config=NoConfig,
        capabilities=frozenset({"sms", "email"}),
    )
    calls: list[str] = field(default_factory=list)  # the key of every send call
    delivered: dict[str, int] = field(default_factory=dict)  # messages that reached a phone, per key
    answers: list[DeliveryResult] = field(default_factory=list)  # queued answers (default: sent)
    on_send: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def send(self, ctx: ConnectorContext, message: Notification) -> DeliveryResult:
        if self.on_send is not None:
            await self.on_send(message)
        with self.lock:
            self.calls.append(message.reference)
            answer = self.answers.pop(0) if self.answers else DeliveryResult(status="sent")
            if answer.accepted:
                self.delivered.setdefault(message.reference, 0)
                self.delivered[message.reference] = 1  # the provider dedupes: one message per key
        return answer


class ProviderPlugin:
    def __init__(self, provider: DedupingProvider) -> None:
        self.provider = provider

    @hookimpl
    def kaquan_connectors(self) -> list[DedupingProvider]:
        return [self.provider]


@pytest.fixture
def provider() -> DedupingProvider:
    return DedupingProvider()


@pytest.fixture
def run_job(settings, kernel, provider):
    plugins = load_plugins(extra=[("dedupe_provider", ProviderPlugin(provider))])
    env = JobEnv(settings, kernel.keys, plugins, notifier_routes={"*": "dedupe_provider"})

    async def run(tenant_id: uuid.UUID, grant_id: uuid.UUID, retries: int = 0) -> None:
        # a fresh message id each time: what dramatiq's retry or the relay's redelivery looks like
        info = MessageInfo("m-" + uuid.uuid4().hex, "deliver_grant", tenant_id, None, None, retries)
        tokens = set_job_context(env, info)
        try:
            with tenant_context(tenant_id):
                await deliver_grant(str(grant_id))
        finally:
            reset_job_context(tokens)

    return run


async def _grant(shop, product_id, **fields) -> Grant:
    async def go(db):
        grant = await create_grant(
            db, shop.kernel, GrantRequest(product_id=product_id, **fields), source="api"
        )
        await db.flush()
        await db.execute(
            update(OutboxMessage)
            .where(OutboxMessage.business_key == f"deliver_grant:{grant.id}")
            .values(available_at=FAR)
        )
        return grant

    return await shop.run(go)


async def _state(shop, grant_id):
    async def go(db):
        g = (await db.execute(select(Grant).where(Grant.id == grant_id))).scalar_one()
        attempt = (
            await db.execute(select(GrantDelivery).where(GrantDelivery.grant_id == grant_id))
        ).scalar_one_or_none()
        events = list(
            (await db.execute(select(Event.type).where(Event.object_id == str(grant_id)))).scalars()
        )
        return g, attempt, events

    return await shop.run(go)


class LogRecorder:
    """Stands in for the delivery module's logger; keeps (event, fields) of every line."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def _keep(self, event_name: str, **fields: Any) -> None:
        self.lines.append({"event": event_name, **fields})

    info = warning = error = _keep

    def named(self, event_name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["event"] == event_name]


def _fail_commit_once(monkeypatch) -> list[int]:
    """Make the transaction that records the delivery fail at COMMIT once (the database went away)."""
    failures: list[int] = []
    original = delivery_module.mark_delivered

    async def mark_then_lose_the_database(session, grant_id, connector_id):
        moved = await original(session, grant_id, connector_id)
        if not failures:
            failures.append(1)

            def boom(_session: Any) -> None:
                raise OperationalError("COMMIT", {}, ConnectionError("server closed the connection"))

            event.listen(session.sync_session, "before_commit", boom, once=True)
        return moved

    monkeypatch.setattr(delivery_module, "mark_delivered", mark_then_lose_the_database)
    return failures


async def test_a_failed_commit_after_the_send_resends_with_the_same_key_and_delivers_once(
    shop, provider, run_job, monkeypatch
):
    s = await shop.stock(1)
    grant = await _grant(shop, s.product_id, phone="13812340001")
    failures = _fail_commit_once(monkeypatch)
    logs = LogRecorder()
    monkeypatch.setattr(delivery_module, "log", logs)
    with pytest.raises(OperationalError):
        await run_job(shop.id, grant.id)
    assert failures == [1] and provider.calls == [delivery_key(grant.id)]
    assert not logs.named("grant_delivered")  # nothing claimed it was recorded: the commit failed
    g, attempt, events = await _state(shop, grant.id)
    assert g.status == "created" and "grant.delivered" not in events
    assert attempt is not None and attempt.status == "sending" and attempt.attempts == 1

    await run_job(shop.id, grant.id, retries=1)
    assert provider.calls == [delivery_key(grant.id)] * 2  # the notifier saw one key
    assert provider.delivered == {delivery_key(grant.id): 1}  # the member got one message
    g, attempt, events = await _state(shop, grant.id)
    assert g.status == "delivered" and events.count("grant.delivered") == 1
    assert attempt.status == "sent" and attempt.attempts == 2 and attempt.connector == "dedupe_provider"
    logged = logs.named("grant_delivered")
    assert len(logged) == 1 and logged[0]["recorded"] is True and logged[0]["resend"] is True

    await run_job(shop.id, grant.id, retries=2)  # a late redelivery sends nothing
    assert len(provider.calls) == 2


async def test_the_attempt_is_committed_before_the_notifier_is_called(shop, provider, run_job, kernel):
    s = await shop.stock(1)
    grant = await _grant(shop, s.product_id, email="first@example.com")
    seen: list[tuple[str, int]] = []

    async def look_from_another_connection(message: Notification) -> None:
        with tenant_context(shop.id):
            async with kernel.db.transaction() as db:
                row = (
                    await db.execute(select(GrantDelivery).where(GrantDelivery.grant_id == grant.id))
                ).scalar_one()
                seen.append((row.status, row.attempts))

    provider.on_send = look_from_another_connection
    await run_job(shop.id, grant.id)
    assert seen == [("sending", 1)]


async def test_a_retryable_failure_is_recorded_and_the_retry_reuses_the_key(shop, provider, run_job):
    s = await shop.stock(1)
    grant = await _grant(shop, s.product_id, phone="13812340002")
    provider.answers = [DeliveryResult(status="failed", detail="HTTP 503", retryable=True)]
    with pytest.raises(GrantDeliveryFailed):
        await run_job(shop.id, grant.id)
    g, attempt, _ = await _state(shop, grant.id)
    assert g.status == "created" and attempt.status == "failed" and attempt.detail == "HTTP 503"
    await run_job(shop.id, grant.id, retries=1)
    g, attempt, events = await _state(shop, grant.id)
    assert provider.calls == [delivery_key(grant.id)] * 2
    assert g.status == "delivered" and attempt.status == "sent" and events.count("grant.delivered") == 1


async def test_a_rejected_delivery_is_final_and_never_resent(shop, provider, run_job):
    s = await shop.stock(1)
    grant = await _grant(shop, s.product_id, phone="13812340003")
    provider.answers = [DeliveryResult(status="rejected", detail="bad number")]
    await run_job(shop.id, grant.id)
    g, attempt, events = await _state(shop, grant.id)
    assert g.status == "delivery_failed" and attempt.status == "rejected"
    assert events.count("grant.delivery_failed") == 1
    await run_job(shop.id, grant.id, retries=1)
    assert len(provider.calls) == 1


async def test_a_grant_partly_redeemed_before_its_delivery_job_is_still_sent(shop, provider, run_job):
    s = await shop.stock(1)
    grant = await _grant(shop, s.product_id, phone="13812340009")

    async def partly_redeemed(db):
        await db.execute(update(Grant).where(Grant.id == grant.id).values(status="partially_redeemed"))

    await shop.run(partly_redeemed)
    await run_job(shop.id, grant.id)
    assert provider.calls == [delivery_key(grant.id)]
    g, attempt, _ = await _state(shop, grant.id)
    assert g.status == "partially_redeemed" and g.delivered_at is not None  # delivered, status kept
    assert attempt is not None and attempt.status == "sent"


async def test_a_wholly_redeemed_or_voided_grant_is_not_sent(shop, provider, run_job):
    s = await shop.stock(2)
    for status in ("redeemed", "voided"):
        grant = await _grant(shop, s.product_id, phone="13812340010")

        async def move(db, gid=grant.id, to=status):
            await db.execute(update(Grant).where(Grant.id == gid).values(status=to))

        await shop.run(move)
        await run_job(shop.id, grant.id)
    assert provider.calls == []
