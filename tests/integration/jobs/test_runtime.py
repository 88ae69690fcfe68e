"""JobRuntime (embedded and service mode), ``/ready``, and the ``kaquan worker`` entry point."""

from __future__ import annotations

import asyncio
import threading

import msgspec
import pytest

from core.jobs.runtime import JobRuntime
from core.jobs.worker import run_worker
from core.kernel import Kernel
from tests.integration.jobs.conftest import outbox_row

DEAD_REDIS = "redis://127.0.0.1:1/0"


def _kernel(kernel, **changes) -> Kernel:
    return Kernel(
        settings=msgspec.structs.replace(kernel.settings, **changes), db=kernel.db, keys=kernel.keys
    )


async def _owner_invite_id(kernel, tenant_id):
    from sqlalchemy import select

    from core.db.context import tenant_context
    from core.jobs.models import OutboxMessage

    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return (
                await db.execute(select(OutboxMessage.id).where(OutboxMessage.business_key.like("invite:%")))
            ).scalar_one()


async def _wait_status(kernel, tenant_id, outbox_id, status: str) -> str:
    current = ""
    for _ in range(1200):  # a condition wait (up to two minutes), not a timing assertion
        current = (await outbox_row(kernel, tenant_id, outbox_id)).status
        if current == status:
            break
        await asyncio.sleep(0.1)
    return current


async def test_app_runtime_is_ready(client, app):
    assert await app.state.jobs.ping() == "ok"
    r = await client.get("/ready")
    assert r.status_code == 200 and r.json()["checks"]["broker"] == "ok"
    expected = "service" if app.state.kernel.settings.redis_url else "embedded"
    assert app.state.jobs.mode == expected


async def test_ping_reports_an_unreachable_broker(kernel):
    runtime = JobRuntime(_kernel(kernel, redis_url=DEAD_REDIS))
    assert runtime.mode == "service"
    assert (await runtime.ping()).startswith("error: ")


async def test_embedded_runtime_starts_and_stops_cleanly(kernel):
    runtime = JobRuntime(_kernel(kernel, redis_url="", in_process_worker=True))
    assert runtime.mode == "embedded"
    await runtime.start()
    try:
        assert runtime.relay.running and runtime.worker is not None
        assert await runtime.ping() == "ok"
    finally:
        await runtime.stop()
    assert not runtime.relay.running and runtime.worker is None


async def test_embedded_app_delivers_the_owner_invite(kernel, make_tenant):
    if kernel.settings.redis_url:
        pytest.skip("embedded mode only (no KAQUAN_TEST_REDIS_URL)")
    tenant = await make_tenant()
    outbox_id = await _owner_invite_id(kernel, tenant.id)
    assert await _wait_status(kernel, tenant.id, outbox_id, "done") == "done"


async def test_worker_process_consumes_what_the_app_relay_enqueued(kernel, settings, make_tenant):
    if not settings.redis_url:
        pytest.skip("service mode only (KAQUAN_TEST_REDIS_URL)")
    tenant = await make_tenant()
    outbox_id = await _owner_invite_id(kernel, tenant.id)
    assert await _wait_status(kernel, tenant.id, outbox_id, "enqueued") in ("enqueued", "done")
    stop = threading.Event()
    thread = threading.Thread(
        target=run_worker, args=(settings,), kwargs={"threads": 2, "stop": stop}, daemon=True
    )
    thread.start()
    try:
        status = await _wait_status(kernel, tenant.id, outbox_id, "done")
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 60)
    assert status == "done"
    assert not thread.is_alive()


def test_worker_needs_redis(settings):
    with pytest.raises(SystemExit, match="KAQUAN_REDIS_URL"):
        run_worker(msgspec.structs.replace(settings, redis_url=""))


async def test_embedded_runtime_runs_the_periodic_scheduler_itself(kernel, make_tenant, monkeypatch):
    """Embedded mode needs no `kaquan scheduler`: the API process ticks periodic work (expiry sweeps,
    reminders, alerts) itself; the test swaps in one harmless periodic job to watch it tick."""
    import datetime as dt

    from sqlalchemy import select

    from core.db.context import tenant_context
    from core.jobs import runtime as runtime_module
    from core.jobs.models import OutboxMessage
    from core.jobs.scheduler import Periodic, build_scheduler

    tenant = await make_tenant()
    probe = Periodic("purge_access_tokens_probe", "purge_expired_access_tokens", dt.timedelta(hours=1))
    monkeypatch.setattr(runtime_module, "build_scheduler", lambda settings: build_scheduler(settings, (probe,)))
    runtime = JobRuntime(_kernel(kernel, redis_url="", in_process_worker=True, in_process_scheduler=True))
    await runtime.start()
    try:
        assert runtime.scheduler is not None and runtime.scheduler.running
        keys: list[str] = []
        for _ in range(100):
            with tenant_context(tenant.id):
                async with kernel.db.transaction() as db:
                    keys = list((await db.execute(
                        select(OutboxMessage.business_key).where(
                            OutboxMessage.business_key.like("purge_access_tokens_probe:%")
                        )
                    )).scalars())
            if keys:
                break
            await asyncio.sleep(0.1)
        assert len(keys) == 1  # one row per window: `purge_access_tokens_probe:<window start>`
    finally:
        await runtime.stop()
    assert runtime.scheduler is None


async def test_embedded_runtime_without_the_scheduler_switch_starts_none(kernel):
    runtime = JobRuntime(_kernel(kernel, redis_url="", in_process_worker=True, in_process_scheduler=False))
    await runtime.start()
    try:
        assert runtime.worker is not None and runtime.scheduler is None
    finally:
        await runtime.stop()
