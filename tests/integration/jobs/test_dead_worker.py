"""A ``kill -9``-ed worker's message is taken over by another worker within a bound (issue 9, item 26).

Real worker processes (:func:`core.jobs.worker.run_worker`, the body of ``kaquan worker``) on a private
``redis-server``, with short heartbeat settings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dramatiq
import msgspec

from core.jobs.broker import KaquanRedisBroker, build_broker
from tests.conftest import ROOT
from tests.integration.jobs.redis_server import private_redis
from tests.integration.jobs.slow_job import SLOW_JOB

WORKER = (
    "import tests.integration.jobs.slow_job\n"
    "from core.jobs.worker import run_worker\n"
    "from core.settings import load_settings\n"
    "run_worker(load_settings(), threads=1, queues=['default'])\n"
)
HEARTBEAT_SECONDS = 3
MAINTENANCE_SECONDS = 1
#: Heartbeat + maintenance + a worker's start-up and polling, with room for a loaded machine.
TAKEOVER_BOUND_SECONDS = 45


def _start_worker(settings, redis_url: str, namespace: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "KAQUAN_REDIS_URL": redis_url,
        "KAQUAN_REDIS_NAMESPACE": namespace,
        "KAQUAN_WORKER_HEARTBEAT_TIMEOUT_SECONDS": str(HEARTBEAT_SECONDS),
        "KAQUAN_BROKER_MAINTENANCE_SECONDS": str(MAINTENANCE_SECONDS),
        "KAQUAN_DATABASE_URL": settings.database_url,
        "KAQUAN_DATABASE_OWNER_URL": settings.database_owner_url,
        "KAQUAN_DATA_DIR": settings.data_dir,
        "KAQUAN_MASTER_KEY": settings.master_key,
        "KAQUAN_LOG_JSON": "false",
        "KAQUAN_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-c", WORKER], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _wait_for(folder: Path, prefix: str, seconds: float) -> list[Path]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = sorted(folder.glob(f"{prefix}-*"))
        if found:
            return found
        time.sleep(0.1)
    return []


def test_the_broker_is_configured_from_the_heartbeat_settings(settings):
    tuned = msgspec.structs.replace(
        settings,
        redis_url="redis://127.0.0.1:1/0",
        worker_heartbeat_timeout_seconds=7,
        broker_maintenance_seconds=2,
    )
    broker = build_broker(tuned, None, namespace="unused")
    try:
        assert isinstance(broker, KaquanRedisBroker)
        assert broker.heartbeat_timeout == 7000 and broker.maintenance_interval == 2
        assert broker._maintenance_due("fetch", "default") == 1  # first command on a queue: maintain
        assert broker._maintenance_due("ack", "default") == 0
    finally:
        broker.close()


def test_a_killed_workers_job_is_taken_over_by_another_worker_within_the_bound(settings, tmp_path):
    namespace = f"kaquan-deadworker-{os.getpid()}"
    with private_redis() as (url, _redis):
        sender = build_broker(msgspec.structs.replace(settings, redis_url=url), None, namespace=namespace)
        first = _start_worker(settings, url, namespace)
        second: subprocess.Popen[bytes] | None = None
        try:
            message = dramatiq.Message(
                queue_name="default",
                actor_name=SLOW_JOB,
                args=(),
                kwargs={"marker_dir": str(tmp_path), "seconds": 600},
                options={},
            )
            sender.enqueue(message)
            started = _wait_for(tmp_path, "started", 120)
            assert started == [tmp_path / f"started-{first.pid}"], first.stderr and first.poll()
            os.kill(first.pid, signal.SIGKILL)  # the worker dies holding the unacknowledged message
            first.wait(timeout=30)
            killed_at = time.monotonic()
            second = _start_worker(settings, url, namespace)
            done = _wait_for(tmp_path, "done", TAKEOVER_BOUND_SECONDS)
            took = time.monotonic() - killed_at
            assert done == [tmp_path / f"done-{second.pid}"], f"not taken over within {took:.0f} s"
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=40)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            sender.close()
