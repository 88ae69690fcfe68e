"""The job runtime of the API process: broker, outbox relay and (embedded mode) an in-process worker.

- Embedded mode (no ``KAQUAN_REDIS_URL``): a StubBroker, the relay loop as an asyncio task, a
  dramatiq ``Worker`` with a few threads in this process (``KAQUAN_IN_PROCESS_WORKER``, default on) and
  the periodic-work scheduler (``KAQUAN_IN_PROCESS_SCHEDULER``, default on): one process does it all.
- Service mode: a RedisBroker and the relay loop only; ``kaquan worker`` processes do the work.

``create_app`` calls ``JobRuntime(kernel)``, ``await start()`` / ``await stop()`` in its lifespan, and
``/ready`` reports ``await ping()``.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from dramatiq import Worker
from dramatiq.brokers.redis import RedisBroker

from core.jobs.broker import build_broker
from core.jobs.context import JobEnv
from core.jobs.relay import OutboxRelay
from core.jobs.scheduler import build_scheduler
from core.kernel import Kernel
from core.plugin_host import PluginHost, load_plugins

log = structlog.get_logger("kaquan.jobs")

EMBEDDED_WORKER_THREADS = 2


class JobRuntime:
    """Owns the broker, the relay task and the embedded worker of one API process."""

    def __init__(self, kernel: Kernel, *, plugins: PluginHost | None = None) -> None:
        self.kernel = kernel
        settings = kernel.settings
        self.plugins = plugins or load_plugins(settings.disabled_plugin_names)
        self.env = JobEnv(settings, kernel.keys, self.plugins)
        self.broker = build_broker(settings, self.env)
        self.mode = "service" if settings.redis_url else "embedded"
        self.relay = OutboxRelay(
            kernel.db,
            self.broker,
            poll_seconds=settings.outbox_poll_seconds,
            redeliver_after=dt.timedelta(seconds=settings.outbox_redeliver_seconds),
        )
        self.worker: Worker | None = None
        self.scheduler: BackgroundScheduler | None = None

    async def start(self) -> None:
        """Start the relay loop, and in embedded mode the in-process worker and scheduler."""
        settings = self.kernel.settings
        if self.mode == "embedded" and settings.in_process_worker and self.worker is None:
            self.worker = Worker(self.broker, worker_threads=EMBEDDED_WORKER_THREADS)
            self.worker.start()
            if settings.in_process_scheduler and self.scheduler is None:
                # expiry sweeps, reminders, alerts: without `kaquan scheduler` nothing else would enqueue them
                self.scheduler = build_scheduler(settings)
                self.scheduler.start()
        self.relay.start()
        log.info(
            "jobs_started",
            mode=self.mode,
            in_process_worker=self.worker is not None,
            in_process_scheduler=self.scheduler is not None,
        )

    async def stop(self) -> None:
        """Stop the relay (after its current pass), then let the worker finish its running jobs."""
        if self.scheduler is not None:
            scheduler, self.scheduler = self.scheduler, None
            await asyncio.to_thread(scheduler.shutdown, True)  # a running tick finishes its transaction
        await self.relay.stop()
        if self.worker is not None:
            worker, self.worker = self.worker, None
            await asyncio.to_thread(worker.stop, 10_000)
        await asyncio.to_thread(self.broker.close)
        log.info("jobs_stopped", mode=self.mode)

    async def ping(self) -> str:
        """``"ok"`` if the broker answers (Redis ``PING``), else ``"error: <reason>"``."""
        if isinstance(self.broker, RedisBroker):
            try:
                await asyncio.to_thread(self.broker.client.ping)
            except Exception as exc:  # boundary: readiness probe; any broker failure means not ready
                return f"error: {type(exc).__name__}"
            return "ok"
        if self.kernel.settings.in_process_worker and self.worker is None:
            return "error: in-process worker not running"
        return "ok"
