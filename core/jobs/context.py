"""What a running actor can see: the job environment, the message it is processing, its event loop.

dramatiq actors are synchronous and run on the worker's threads. kaquan actors are ``async``: each
worker thread gets its own asyncio event loop (created on first use, closed when the thread stops)
and its own :class:`~core.db.session.Database` (async engines and their connections belong to one
loop). Context variables set by the tenant middleware in the worker thread (tenant, audit actor,
environment, message) are copied into the coroutine's task, so ``current_tenant()`` just works.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, TypeVar

from core.crypto.services import KeyService
from core.db.session import Database
from core.plugin_host import PlatformAccount, PluginHost
from core.settings import Settings

T = TypeVar("T")


class JobEnv:
    """Settings, keys and plugins shared by a broker's actors, plus one database per worker thread.

    ``connector_accounts`` are the platform's connector accounts, built once by the plugin host from the
    connector settings (a connector that cannot read its settings stops the worker at start).
    ``notifier_routes`` maps a notification channel to a connector id; ``None`` means the routing of
    :func:`core.notifications.delivery.route` over those accounts.
    """

    def __init__(
        self,
        settings: Settings,
        keys: KeyService,
        plugins: PluginHost,
        *,
        notifier_routes: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.plugins = plugins
        self.notifier_routes = notifier_routes
        self.connector_accounts: dict[str, PlatformAccount] = plugins.platform_accounts(
            settings.connector_settings
        )

    @property
    def embedded(self) -> bool:
        """Embedded mode: no Redis, the worker runs inside the API process."""
        return not self.settings.redis_url

    def db(self) -> Database:
        """This thread's database for this environment (created on first use)."""
        dbs: dict[int, Database] = _thread_state().dbs
        db = dbs.get(id(self))
        if db is None:
            # a worker thread runs one actor at a time: a small pool of its own
            db = dbs[id(self)] = Database.from_settings(self.settings, pool_size=2, max_overflow=2)
        return db


@dataclass(frozen=True)
class MessageInfo:
    """The message an actor is processing (from its dramatiq options)."""

    message_id: str
    actor: str
    tenant_id: uuid.UUID | None
    business_key: str | None
    outbox_id: uuid.UUID | None
    retries: int

    @property
    def idempotency_key(self) -> str:
        """The business key, or (for a message sent directly, not through the outbox) its id."""
        return self.business_key or f"{self.actor}:{self.message_id}"


_env: ContextVar[JobEnv | None] = ContextVar("kaquan_job_env", default=None)
_message: ContextVar[MessageInfo | None] = ContextVar("kaquan_job_message", default=None)


def current_env() -> JobEnv:
    """The job environment of the running actor (set by the tenant middleware)."""
    env = _env.get()
    if env is None:
        raise RuntimeError("no job environment: actors run in a kaquan worker (see core.jobs.broker)")
    return env


def current_message() -> MessageInfo | None:
    return _message.get()


def set_job_context(
    env: JobEnv | None, message: MessageInfo | None
) -> tuple[Token[JobEnv | None], Token[MessageInfo | None]]:
    """Set the environment and message for this thread's next actor call; returns reset tokens."""
    return _env.set(env), _message.set(message)


def reset_job_context(tokens: tuple[Token[JobEnv | None], Token[MessageInfo | None]]) -> None:
    _env.reset(tokens[0])
    _message.reset(tokens[1])


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.dbs: dict[int, Database] = {}


_state = _ThreadState()


def _thread_state() -> _ThreadState:
    return _state


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_in_thread_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on this thread's event loop (a worker thread, never the API loop)."""
    state = _thread_state()
    if _loop_running():
        coro.close()
        raise RuntimeError("run_in_thread_loop called from a running event loop; await the job instead")
    if state.loop is None or state.loop.is_closed():
        state.loop = asyncio.new_event_loop()
    return state.loop.run_until_complete(coro)


def close_thread_loop() -> None:
    """Dispose this thread's databases and close its event loop (worker thread shutdown)."""
    state = _thread_state()
    loop, dbs = state.loop, list(state.dbs.values())
    state.dbs.clear()
    if loop is None or loop.is_closed():
        return
    try:
        for db in dbs:
            loop.run_until_complete(db.dispose())
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
        state.loop = None
