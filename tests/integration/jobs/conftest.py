"""Job fixtures: a recording notifier, a job environment, and a broker with a running worker.

The broker is a RedisBroker (own namespace per test) when ``KAQUAN_TEST_REDIS_URL`` is set, else a
StubBroker — so the same tests run on both. Outbox rows a test wants to relay itself are "held":
their ``available_at`` is moved to a far future inside the creating transaction, so the app's own
background relay never sees them, and the test relays them with ``now=FAR``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import msgspec
import pytest
from dramatiq import Worker
from dramatiq.middleware import Middleware
from sqlalchemy import select, update

from core.audit.context import Actor, current_actor
from core.db.base import utcnow
from core.db.context import current_tenant, tenant_context
from core.jobs.broker import build_broker
from core.jobs.context import JobEnv
from core.jobs.models import OutboxMessage
from core.jobs.registry import QUEUES
from core.plugin_host import PluginHost, load_plugins
from plugins import ConnectorContext, ConnectorInfo, DeliveryResult, Notification, hookimpl
from tenants.users import create_invited_user

FAR = utcnow().replace(microsecond=0) + dt.timedelta(days=30)


class RecorderConfig(msgspec.Struct, frozen=True):
    """The recording notifier takes no settings."""


@dataclass
class Delivered:
    ctx_tenant: uuid.UUID | None
    context_tenant: uuid.UUID | None
    actor: Actor
    message: Notification


@dataclass
class RecordingNotifier:
    info = ConnectorInfo(
        id="test_recorder",
        kind="notifier",
        display_name="Test recorder",
        config=RecorderConfig,
        capabilities=frozenset({"email", "sms"}),
    )
    sent: list[Delivered] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def send(self, ctx: ConnectorContext, message: Notification) -> DeliveryResult:
        with self.lock:
            self.sent.append(Delivered(ctx.tenant_id, current_tenant(), current_actor(), message))
        return DeliveryResult(status="sent", provider_message_id=f"rec-{len(self.sent)}")

    def to(self, recipient: str) -> list[Delivered]:
        with self.lock:
            return [d for d in self.sent if d.message.to == recipient]


class RecorderPlugin:
    def __init__(self, recorder: RecordingNotifier) -> None:
        self.recorder = recorder

    @hookimpl
    def kaquan_connectors(self) -> list[RecordingNotifier]:
        return [self.recorder]


class CaptureMiddleware(Middleware):
    """Keeps every enqueued message's encoded bytes (to prove no plaintext secret travels)."""

    def __init__(self) -> None:
        self.messages: list[dramatiq.Message[Any]] = []
        self.encoded: list[bytes] = []
        self.errors: list[str] = []

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int) -> None:
        self.messages.append(message)
        self.encoded.append(message.encode())

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is not None:
            self.errors.append(f"{message.actor_name}: {exception!r} (failed={message.failed})")

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.errors.append(f"{message.actor_name}: skipped")

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        self.errors.append(f"{message.actor_name}: dead-lettered {message.options.get('traceback')}")


@dataclass
class JobHarness:
    env: JobEnv
    recorder: RecordingNotifier
    broker: dramatiq.Broker
    worker: Worker
    capture: CaptureMiddleware

    async def drain(self) -> None:
        """Wait until every queue is empty and the worker is idle."""

        def join() -> None:
            for queue in QUEUES:
                if queue in self.broker.get_declared_queues():
                    self.broker.join(queue, timeout=120_000)
            self.worker.join()

        await asyncio.to_thread(join)
        assert not self.capture.errors, self.capture.errors


@pytest.fixture
def recorder() -> RecordingNotifier:
    return RecordingNotifier()


@pytest.fixture
def plugin_host(recorder: RecordingNotifier) -> PluginHost:
    return load_plugins(extra=[("test_recorder", RecorderPlugin(recorder))])


@pytest.fixture
async def jobs(
    settings: Any, kernel: Any, recorder: RecordingNotifier, plugin_host: PluginHost
) -> AsyncIterator[JobHarness]:
    env = JobEnv(settings, kernel.keys, plugin_host, notifier_routes={"*": "test_recorder"})
    broker = build_broker(settings, env, namespace=f"kaquan-test-{secrets.token_hex(4)}")
    capture = CaptureMiddleware()
    broker.add_middleware(capture)
    worker = Worker(broker, worker_threads=2)
    worker.start()
    try:
        yield JobHarness(env, recorder, broker, worker, capture)
    finally:
        await asyncio.to_thread(worker.stop, 30_000)
        await asyncio.to_thread(broker.flush_all)
        await asyncio.to_thread(broker.close)


async def hold_outbox(session: Any, business_key: str) -> OutboxMessage:
    """Move a just-written (uncommitted) outbox row to ``FAR`` so only the test relays it."""
    await session.flush()
    await session.execute(
        update(OutboxMessage).where(OutboxMessage.business_key == business_key).values(available_at=FAR)
    )
    return (
        await session.execute(select(OutboxMessage).where(OutboxMessage.business_key == business_key))
    ).scalar_one()


@dataclass
class Invite:
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    url: str
    business_key: str
    outbox_id: uuid.UUID


async def held_invite(kernel: Any, tenant_id: uuid.UUID, email: str | None = None) -> Invite:
    """Invite a user (the business change) with its notification held in the outbox."""
    email = email or f"{secrets.token_hex(4)}@staff.example.com"
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            user, url = await create_invited_user(kernel, db, email, "viewer", "Zoe")
            await db.flush()
            key = (
                await db.execute(
                    select(OutboxMessage.business_key).where(
                        OutboxMessage.business_key.like(f"invite:{user.id}:%")
                    )
                )
            ).scalar_one()
            row = await hold_outbox(db, key)
    return Invite(tenant_id, user.id, email, url, key, row.id)


async def outbox_row(kernel: Any, tenant_id: uuid.UUID, outbox_id: uuid.UUID) -> OutboxMessage:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return (await db.execute(select(OutboxMessage).where(OutboxMessage.id == outbox_id))).scalar_one()


from tests.integration.console.conftest import browser, make_user, new_browser  # noqa: E402, F401
