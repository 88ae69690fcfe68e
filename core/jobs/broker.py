"""The dramatiq broker: Redis in service mode (namespace ``kaquan``), a StubBroker in embedded mode.

:class:`TenantMiddleware` makes every message carry its tenant: ``before_enqueue`` copies the tenant
in context into the message options; ``before_process_message`` sets that tenant, the audit actor
``system/worker``, the job environment and the message info for the actor, and marks its outbox row
``running``; ``after_process_message``
records the outbox outcome (``done``, or ``failed`` once dramatiq's retries are exhausted) and resets
everything. It is installed first, so its ``before`` hooks run before and its ``after`` hooks after
every other middleware (dramatiq runs ``after`` hooks in reverse order).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import dramatiq
import redis
import structlog
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import current_millis
from dramatiq.middleware import Middleware, default_middleware
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from sqlalchemy import update

from core.audit.context import Actor, reset_actor, set_actor
from core.db.base import utcnow
from core.db.context import current_tenant, reset_tenant, set_tenant
from core.jobs.context import (
    JobEnv,
    MessageInfo,
    close_thread_loop,
    reset_job_context,
    run_in_thread_loop,
    set_job_context,
)
from core.jobs.models import OutboxMessage
from core.jobs.registry import declare_actors
from core.settings import Settings

NAMESPACE = "kaquan"
TENANT_OPTION = "kaquan_tenant_id"
BUSINESS_KEY_OPTION = "kaquan_business_key"
OUTBOX_OPTION = "kaquan_outbox_id"
WORKER_ACTOR = Actor("system", "worker")

log = structlog.get_logger("kaquan.jobs")


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


class TenantMiddleware(Middleware):
    """Carries the tenant id from the enqueuing context to the actor, and tracks outbox rows."""

    def __init__(self, env: JobEnv | None) -> None:
        self.env = env
        self._local = threading.local()

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int) -> None:
        if not message.options.get(TENANT_OPTION):
            tenant_id = current_tenant()
            if tenant_id is not None:
                message.options[TENANT_OPTION] = str(tenant_id)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        options = message.options
        tenant_id = _uuid(options.get(TENANT_OPTION))
        info = MessageInfo(
            message_id=message.message_id,
            actor=message.actor_name,
            tenant_id=tenant_id,
            business_key=options.get(BUSINESS_KEY_OPTION),
            outbox_id=_uuid(options.get(OUTBOX_OPTION)),
            retries=int(options.get("retries", 0)),
        )
        tokens = (
            set_tenant(tenant_id),
            set_actor(WORKER_ACTOR),
            set_job_context(self.env, info),
            structlog.contextvars.bind_contextvars(
                tenant_id=str(tenant_id) if tenant_id else None,
                job=message.actor_name,
                message_id=info.message_id,
            ),
        )
        self._stack().append((message.message_id, info, tokens))
        if info.outbox_id is not None and self.env is not None and tenant_id is not None:
            self._mark_running(info.outbox_id)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        entry = self._pop(message.message_id)
        if entry is None:
            return
        info, tokens = entry
        try:
            if info.outbox_id is not None and self.env is not None and info.tenant_id is not None:
                if exception is None:
                    self._mark_outbox(info.outbox_id, "done", None)
                elif message.failed:
                    self._mark_outbox(
                        info.outbox_id, "failed", f"{type(exception).__name__}: {exception}"[:2000]
                    )
        finally:
            self._reset(tokens)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        entry = self._pop(message.message_id)
        if entry is not None:
            self._reset(entry[1])

    def before_worker_thread_shutdown(self, broker: dramatiq.Broker, thread: Any) -> None:
        close_thread_loop()

    def _mark_running(self, outbox_id: uuid.UUID) -> None:
        """``enqueued`` → ``running`` (stamped now): a worker has it, so the relay leaves it alone for
        :data:`core.jobs.relay.RUNNING_REDELIVER_AFTER` instead of the short redelivery time."""
        assert self.env is not None
        db = self.env.db()

        async def mark() -> None:
            async with db.transaction() as session:
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == outbox_id, OutboxMessage.status.in_(("enqueued", "running")))
                    .values(status="running", enqueued_at=utcnow())
                )

        try:
            run_in_thread_loop(mark())
        except Exception:  # boundary: worker middleware; the relay may re-send it, actors are idempotent
            log.warning("outbox_mark_failed", outbox_id=str(outbox_id), status="running", exc_info=True)

    def _mark_outbox(self, outbox_id: uuid.UUID, status: str, error: str | None) -> None:
        assert self.env is not None
        db = self.env.db()

        async def mark() -> None:
            async with db.transaction() as session:
                values: dict[str, Any] = {"status": status}
                if error is not None:
                    values["last_error"] = error
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == outbox_id, OutboxMessage.status != "done")
                    .values(**values)
                )

        try:
            run_in_thread_loop(mark())
        except Exception:  # boundary: worker middleware; a stale row is redelivered, the actor is idempotent
            log.warning("outbox_mark_failed", outbox_id=str(outbox_id), status=status, exc_info=True)

    def _stack(self) -> list[tuple[str, MessageInfo, tuple[Any, ...]]]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def _pop(self, message_id: str) -> tuple[MessageInfo, tuple[Any, ...]] | None:
        stack = self._stack()
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][0] == message_id:
                _, info, tokens = stack.pop(i)
                return info, tokens
        return None

    @staticmethod
    def _reset(tokens: tuple[Any, ...]) -> None:
        tenant_token, actor_token, job_tokens, log_tokens = tokens
        structlog.contextvars.reset_contextvars(**log_tokens)
        reset_job_context(job_tokens)
        reset_actor(actor_token)
        reset_tenant(tenant_token)


class KaquanRedisBroker(RedisBroker):
    """dramatiq's Redis broker with time-based queue maintenance, so a dead worker's messages come back.

    A worker proves it is alive by a heartbeat on each broker command (an idle worker polls every
    queue about once a second). *Maintenance* puts the unacknowledged messages of workers whose
    heartbeat is older than ``heartbeat_timeout`` back on their queue; dramatiq runs it on a random
    0.1 % of commands, which left a ``kill -9``-ed worker's messages standing for many minutes. Here
    every queue is maintained at least every ``maintenance_interval`` seconds by whichever worker polls
    it, so another worker takes a dead worker's messages over within about ``heartbeat_timeout +
    maintenance_interval`` seconds (``KAQUAN_WORKER_HEARTBEAT_TIMEOUT_SECONDS``,
    ``KAQUAN_BROKER_MAINTENANCE_SECONDS``). The actors are idempotent, so a worker that only looked
    dead (paused longer than the timeout) costs a repeated, harmless run.
    """

    def __init__(self, *, maintenance_interval: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.maintenance_interval = maintenance_interval
        self._maintained: dict[str, float] = {}
        self._maintenance_lock = threading.Lock()

    def _maintenance_due(self, command: str, queue_name: str) -> int:
        if command in ("ack", "nack"):
            return 0
        now = time.monotonic()
        with self._maintenance_lock:
            last = self._maintained.get(queue_name)
            if last is None or now - last >= self.maintenance_interval:
                self._maintained[queue_name] = now
                return 1
        return int(self._should_do_maintenance(command))

    def _dispatch(self, command: str) -> Any:
        dispatch = self.scripts["dispatch"]
        keys = [self.namespace]

        def do_dispatch(queue_name: str, *args: Any) -> Any:
            return dispatch(
                args=[
                    command,
                    current_millis(),
                    queue_name,
                    self.broker_id,
                    self.heartbeat_timeout,
                    self.dead_message_ttl,
                    self._maintenance_due(command, queue_name),
                    self._max_unpack_size(),
                    *args,
                ],
                keys=keys,
            )

        return do_dispatch


def redis_client(url: str) -> redis.Redis:
    """A Redis client that fails fast when the broker is down (the relay then backs off)."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 2),
    )


def redis_namespace(settings: Settings) -> str:
    """The Redis key namespace of the job queues: ``settings.redis_namespace`` if that field exists and
    is set (so two deployments, or two test sessions, can share one Redis database), else ``kaquan``.
    """
    return settings.redis_namespace or NAMESPACE


def build_broker(
    settings: Settings,
    env: JobEnv | None,
    *,
    redis_url: str | None = None,
    namespace: str | None = None,
) -> dramatiq.Broker:
    """A broker with the tenant middleware and every kaquan actor declared on it.

    ``redis_url`` overrides ``settings.redis_url`` (tests point it at a closed port) and ``namespace``
    overrides :func:`redis_namespace`. An empty URL gives a :class:`StubBroker` (embedded mode: consumed
    by the in-process worker). dramatiq's global broker is not touched.
    """
    url = settings.redis_url if redis_url is None else redis_url
    middleware: list[Middleware] = [TenantMiddleware(env), *(m() for m in default_middleware)]
    broker: dramatiq.Broker
    if url:
        broker = KaquanRedisBroker(
            client=redis_client(url),
            namespace=namespace or redis_namespace(settings),
            middleware=middleware,
            heartbeat_timeout=int(settings.worker_heartbeat_timeout_seconds * 1000),
            maintenance_interval=settings.broker_maintenance_seconds,
        )
    else:
        broker = StubBroker(middleware=middleware)
        broker.emit_after("process_boot")
    declare_actors(broker)
    return broker
