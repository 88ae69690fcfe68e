"""The scheduler: one process that only enqueues periodic work (APScheduler 3).

Every tick writes one outbox row per tenant with a business key naming the time window
(``purge_access_tokens:2026-01-01T08:00:00+00:00``), so a second scheduler, a restart or a missed tick
never queues the same work twice. The relay sends the rows; actors do the work.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import threading

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

from core.db.base import utcnow
from core.db.context import cross_tenant
from core.db.session import Database
from core.domains import Periodic, periodic_tasks
from core.jobs.outbox import enqueue_for_tenants
from core.logging import configure_logging
from core.settings import Settings
from tenants.models import Tenant

log = structlog.get_logger("kaquan.scheduler")
#: Every domain's periodic tasks (see :mod:`core.domains`).
PERIODIC: tuple[Periodic, ...] = periodic_tasks()


async def enqueue_periodic(db: Database, periodic: Periodic, now: dt.datetime | None = None) -> int:
    """Write this window's outbox rows for every tenant; returns how many were new."""
    now = now or utcnow()
    with cross_tenant(f"scheduler {periodic.name}"):
        async with db.transaction() as session:
            tenant_ids = list((await session.execute(select(Tenant.id).order_by(Tenant.id))).scalars())
            created = await enqueue_for_tenants(
                session,
                periodic.actor,
                {},
                business_key=periodic.business_key(now),
                tenant_ids=tenant_ids,
                available_at=now,
            )
    log.info("periodic_enqueued", job=periodic.name, tenants=len(tenant_ids), new=created)
    return created


def _tick(settings: Settings, periodic: Periodic) -> None:
    """One scheduled run, on an APScheduler thread: its own event loop and short-lived engine."""

    async def once() -> None:
        db = Database.from_settings(settings, pool_size=1, max_overflow=1)
        try:
            await enqueue_periodic(db, periodic)
        finally:
            await db.dispose()

    try:
        asyncio.run(once())
    except Exception:  # boundary: scheduler tick; the next tick tries again
        log.exception("periodic_enqueue_failed", job=periodic.name)


def build_scheduler(settings: Settings, periodic: tuple[Periodic, ...] = PERIODIC) -> BackgroundScheduler:
    """An (unstarted) APScheduler with one interval job per :class:`Periodic`, first run at start.

    Jobs run on a small thread pool; ``shutdown(wait=True)`` lets a running tick finish its transaction.
    """
    scheduler = BackgroundScheduler(timezone=dt.UTC, executors={"default": ThreadPoolExecutor(max_workers=2)})
    for p in periodic:
        scheduler.add_job(
            _tick,
            IntervalTrigger(seconds=int(p.every.total_seconds()), timezone=dt.UTC),
            args=[settings, p],
            id=p.name,
            name=p.name,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=int(p.every.total_seconds()),
            next_run_time=dt.datetime.now(dt.UTC),
        )
    return scheduler


def run_scheduler(settings: Settings, *, stop: threading.Event | None = None) -> None:
    """``kaquan scheduler``: block, enqueueing periodic work, until SIGINT/SIGTERM (or ``stop`` is set).

    Run one per deployment (a second one is harmless: window business keys dedupe). On stop, a
    running tick finishes before the function returns.
    """
    configure_logging(settings.log_level, settings.log_json)
    stop = stop or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    scheduler = build_scheduler(settings)
    scheduler.start()
    log.info("scheduler_started", jobs=[p.name for p in PERIODIC])
    try:
        stop.wait()
    finally:
        scheduler.shutdown(wait=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("scheduler_stopped")
