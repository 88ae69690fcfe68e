"""The scheduler only enqueues (outbox rows, one per tenant per window); actors do the purging."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading

from sqlalchemy import func, select, update

from core.db.base import utcnow
from core.db.context import tenant_context
from core.http.models import IdempotencyRecord
from core.jobs.models import OutboxMessage
from core.jobs.relay import relay_once
from core.jobs.scheduler import PERIODIC, Periodic, build_scheduler, enqueue_periodic, run_scheduler
from tenants.models import AccessToken
from tests.integration.jobs.conftest import FAR

PURGE_KEYS = next(p for p in PERIODIC if p.actor == "purge_expired_idempotency_keys")
PURGE_TOKENS = next(p for p in PERIODIC if p.actor == "purge_expired_access_tokens")


def _record(key: str, expires_at: dt.datetime) -> IdempotencyRecord:
    return IdempotencyRecord(
        principal="client:test",
        key=key,
        method="POST",
        path="/api/v1/users",
        request_hash="0" * 64,
        status="done",
        expires_at=expires_at,
    )


async def _count(kernel, tenant_id, model, *where) -> int:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return int(await db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_scheduler_enqueues_and_the_actors_purge(kernel, make_tenant, make_api_client, jobs):
    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["tenant:read"])
    now = utcnow()
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            db.add(_record("old", now - dt.timedelta(days=2)))
            db.add(_record("fresh", now + dt.timedelta(hours=20)))
            await db.execute(
                update(AccessToken)
                .where(AccessToken.client_pk == creds.client_pk)
                .values(expires_at=now - dt.timedelta(days=3))
            )

    for periodic in (PURGE_KEYS, PURGE_TOKENS):
        assert await enqueue_periodic(kernel.db, periodic, now=FAR) >= 1
        assert await enqueue_periodic(kernel.db, periodic, now=FAR) == 0  # same window: nothing new

    keys = [PURGE_KEYS.business_key(FAR), PURGE_TOKENS.business_key(FAR)]
    assert await _count(kernel, tenant.id, OutboxMessage, OutboxMessage.business_key.in_(keys)) == 2
    # enqueued only: nothing was purged yet
    assert await _count(kernel, tenant.id, IdempotencyRecord) == 2
    assert await _count(kernel, tenant.id, AccessToken) == 1

    report = await relay_once(kernel.db, jobs.broker, now=FAR, tenant_ids=[tenant.id], business_keys=keys)
    assert report.enqueued == 2
    await jobs.drain()
    assert await _count(kernel, tenant.id, IdempotencyRecord, IdempotencyRecord.key == "old") == 0
    assert await _count(kernel, tenant.id, IdempotencyRecord, IdempotencyRecord.key == "fresh") == 1
    assert await _count(kernel, tenant.id, AccessToken) == 0
    done = await _count(
        kernel, tenant.id, OutboxMessage, OutboxMessage.business_key.in_(keys), OutboxMessage.status == "done"
    )
    assert done == 2


def test_windows_and_business_keys_are_stable():
    hourly = Periodic("x", "purge_expired_access_tokens", dt.timedelta(hours=1))
    t = dt.datetime(2026, 3, 1, 10, 59, 59, tzinfo=dt.UTC)
    assert hourly.window(t) == dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)
    assert hourly.business_key(t) == hourly.business_key(t.replace(minute=0, second=0))
    assert hourly.business_key(t) != hourly.business_key(t + dt.timedelta(seconds=1))


def test_build_scheduler_registers_every_periodic_job(settings):
    scheduler = build_scheduler(settings)
    jobs = {j.id: j for j in scheduler.get_jobs()}
    assert set(jobs) == {p.name for p in PERIODIC}
    for p in PERIODIC:
        assert jobs[p.name].trigger.interval == p.every
    assert not scheduler.running


async def test_run_scheduler_enqueues_on_start_and_stops(settings, kernel, make_tenant):
    tenant = await make_tenant()
    stop = threading.Event()
    thread = threading.Thread(target=run_scheduler, args=(settings,), kwargs={"stop": stop}, daemon=True)
    thread.start()
    keys = {PURGE_TOKENS.business_key(utcnow())}
    found = 0
    try:
        for _ in range(600):  # wait (up to a minute) for the first tick
            keys.add(PURGE_TOKENS.business_key(utcnow()))  # the window may turn meanwhile
            found = await _count(kernel, tenant.id, OutboxMessage, OutboxMessage.business_key.in_(keys))
            if found:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 30)
    assert not thread.is_alive()
    assert found == 1
