"""``kaquan worker``: a dramatiq worker process for service mode (Redis broker)."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterable

import structlog
from dramatiq import Worker

from core.jobs.broker import build_broker
from core.jobs.context import JobEnv
from core.kernel import Kernel
from core.logging import configure_logging
from core.plugin_host import PluginError, load_plugins
from core.settings import Settings

log = structlog.get_logger("kaquan.worker")


def run_worker(
    settings: Settings,
    *,
    threads: int = 8,
    queues: Iterable[str] | None = None,
    stop: threading.Event | None = None,
    namespace: str | None = None,
) -> None:
    """Consume kaquan's queues until SIGINT/SIGTERM (or ``stop`` is set), then finish running jobs.

    ``threads`` is the number of worker threads (each with its own event loop and small DB pool);
    ``queues`` limits the queues consumed (default: all); ``namespace`` overrides the Redis namespace
    (default :func:`core.jobs.broker.redis_namespace`, the one the API's relay uses). Needs
    ``KAQUAN_REDIS_URL``: in embedded mode the API process runs the worker itself. Scale out by running
    more of these processes.
    """
    if not settings.redis_url:
        raise SystemExit(
            "kaquan worker needs KAQUAN_REDIS_URL (service mode); "
            "in embedded mode `kaquan serve` runs the worker in-process"
        )
    configure_logging(settings.log_level, settings.log_json)
    kernel = Kernel.create(settings)
    try:
        plugins = load_plugins(settings.disabled_plugin_names)
    except PluginError as exc:  # one line naming the plugin and the switch, as `kaquan serve` says it
        raise SystemExit(f"kaquan worker cannot start: {exc}") from None
    env = JobEnv(settings, kernel.keys, plugins)
    broker = build_broker(settings, env, namespace=namespace)
    worker = Worker(broker, queues=set(queues) if queues else None, worker_threads=threads)
    stop = stop or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    worker.start()
    log.info("worker_started", threads=threads, queues=sorted(queues) if queues else "all")
    try:
        stop.wait()
    finally:
        log.info("worker_stopping")
        worker.stop(timeout=30_000)
        broker.close()
        asyncio.run(kernel.close())
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("worker_stopped")
