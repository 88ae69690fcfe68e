"""Actors are declared once, in modules, and bound to whichever broker is configured.

A module declares an ``async`` job with :func:`job`; nothing touches dramatiq's global broker.
:func:`declare_actors` (called by :func:`core.jobs.broker.build_broker`) imports :data:`JOB_MODULES`
and creates one dramatiq actor per job on the given broker, so a process can hold several brokers
(a test's StubBroker next to the app's) and importing a module never needs a broker to exist.
The dramatiq actor runs the coroutine on its worker thread's event loop (see ``core.jobs.context``).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from inspect import iscoroutinefunction
from typing import Any, TypeVar

import dramatiq

from core.jobs.context import run_in_thread_loop

#: Modules whose jobs every broker gets; a new domain appends its ``jobs`` module here.
JOB_MODULES: tuple[str, ...] = (
    "core.jobs.actors",
    "core.notifications.actors",
    "core.inventory.importing.jobs",
    "core.inventory.jobs",
    "core.bulk_grants.jobs",
    "core.reminders.jobs",
    "core.webhooks.jobs",
    "core.grants.delivery",
    "core.grants.jobs",
    "core.claims.otp",
    "core.risk.jobs",
)

#: Queues (Redis keys are ``kaquan:<queue>`` under the broker namespace).
QUEUES: tuple[str, ...] = ("default", "notifications", "maintenance")

F = TypeVar("F", bound=Callable[..., Awaitable[None]])


@dataclass(frozen=True)
class JobSpec:
    """A declared job: its actor name, queue and retry policy."""

    name: str
    fn: Callable[..., Awaitable[None]]
    queue: str
    max_retries: int
    min_backoff_ms: int
    max_backoff_ms: int
    time_limit_ms: int


_JOBS: dict[str, JobSpec] = {}


def job(
    name: str | None = None,
    *,
    queue: str = "default",
    max_retries: int = 10,
    min_backoff_ms: int = 5_000,
    max_backoff_ms: int = 3_600_000,
    time_limit_ms: int = 30 * 60_000,
) -> Callable[[F], F]:
    """Declare an ``async`` job. Its keyword arguments must be JSON values (they travel in the message).

    The function itself is returned unchanged, so it can also be awaited directly (tests, CLI).
    """
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; add it to core.jobs.registry.QUEUES")

    def decorate(fn: F) -> F:
        if not iscoroutinefunction(fn):
            raise TypeError(f"job {fn.__qualname__} must be `async def`")
        spec = JobSpec(
            name or fn.__name__, fn, queue, max_retries, min_backoff_ms, max_backoff_ms, time_limit_ms
        )
        known = _JOBS.get(spec.name)
        if known is not None and known.fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"two jobs are named {spec.name!r}")
        _JOBS[spec.name] = spec
        return fn

    return decorate


def load_job_modules() -> dict[str, JobSpec]:
    """Import every job module; returns the declared jobs by name."""
    for module in JOB_MODULES:
        importlib.import_module(module)
    return dict(_JOBS)


def _sync_runner(spec: JobSpec) -> Callable[..., None]:
    def run(*args: Any, **kwargs: Any) -> None:
        run_in_thread_loop(spec.fn(*args, **kwargs))

    run.__name__ = run.__qualname__ = spec.name
    run.__module__ = spec.fn.__module__
    return run


def declare_actors(broker: dramatiq.Broker) -> dict[str, dramatiq.Actor[Any, Any]]:
    """Bind every declared job to ``broker`` (idempotent); returns the broker's actors by name."""
    for spec in load_job_modules().values():
        if spec.name in broker.actors:
            continue
        dramatiq.Actor(
            _sync_runner(spec),
            broker=broker,
            actor_name=spec.name,
            queue_name=spec.queue,
            priority=0,
            options={
                "max_retries": spec.max_retries,
                "min_backoff": spec.min_backoff_ms,
                "max_backoff": spec.max_backoff_ms,
                "time_limit": spec.time_limit_ms,
            },
        )
    return dict(broker.actors)
