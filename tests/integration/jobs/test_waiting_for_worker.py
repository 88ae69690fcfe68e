"""A job no worker moves is shown as waiting for a worker, not frozen (issue 9, item 26)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from core.db.context import tenant_context
from core.inventory.models import CodeImport
from core.jobs import progress
from core.jobs.models import JobRecord
from core.settings import Settings
from tests.integration.inventory.stocking import stock_product

HEARTBEAT = dt.timedelta(seconds=Settings().worker_heartbeat_timeout_seconds)


async def _age(kernel, tenant_id, job_id, by: dt.timedelta, **columns) -> None:
    """Move the job's timestamps ``by`` into the past (as if that much time had passed)."""
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            job = await progress.get(db, job_id)
            values = {c: getattr(job, c) - by for c in columns if getattr(job, c) is not None}
            await db.execute(update(JobRecord).where(JobRecord.id == job_id).values(**values))


async def test_job_state_turns_waiting_when_unstarted_or_stalled_past_the_heartbeat(kernel, make_tenant):
    tenant = await make_tenant()
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            job = await progress.create(db, "grants.bulk", total=10)
            await db.flush()
            now = job.created_at
            assert progress.job_state(job, now=now) == "queued"
            later = now + HEARTBEAT + dt.timedelta(seconds=1)
            assert progress.job_state(job, now=later) == "waiting"  # no worker took it
            job = await progress.advance(db, job.id, 2)
            assert job.status == "running" and job.progressed_at is not None
            moved = job.progressed_at
            assert progress.job_state(job, now=moved + dt.timedelta(seconds=1)) == "running"
            stalled = moved + HEARTBEAT + dt.timedelta(seconds=1)
            assert progress.job_state(job, now=stalled) == "waiting"  # its worker died
            assert progress.job_state(job, now=stalled, stale_after=HEARTBEAT * 10) == "running"
            job = await progress.advance(db, job.id, 2)  # no movement: the clock is not reset
            assert job.progressed_at == moved
            job = await progress.advance(db, job.id, 5)
            assert job.progressed_at > moved
            job = await progress.finish(db, job.id, {})
            assert progress.job_state(job, now=stalled + HEARTBEAT * 100) == "succeeded"


async def test_jobs_api_says_waiting_for_a_job_no_worker_moves(client, kernel, make_tenant, make_api_client):
    tenant = await make_tenant()
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            job = await progress.create(db, "codes.import", total=4)
            await progress.advance(db, job.id, 1)
    creds = await make_api_client(tenant, ["jobs:read"])
    body = (await client.get(f"/api/v1/jobs/{job.id}", headers=creds.headers)).json()
    assert (body["status"], body["state"]) == ("running", "running")
    await _age(kernel, tenant.id, job.id, HEARTBEAT * 2, created_at=1, started_at=1, progressed_at=1)
    body = (await client.get(f"/api/v1/jobs/{job.id}", headers=creds.headers)).json()
    assert (body["status"], body["state"]) == ("running", "waiting") and body["progressed_at"]


async def test_console_progress_bar_says_waiting_for_a_worker(browser, kernel, make_tenant):
    tenant = await make_tenant()
    stocked = await stock_product(kernel, tenant.id, 1)
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            job = await progress.create(db, "codes.import", total=100)
            imp = CodeImport(product_id=stocked.product_id, status="queued", valid_rows=100, job_id=job.id)
            db.add(imp)
            await db.flush()
            import_id = imp.id
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    fresh = (await browser.get(f"/console/imports/{import_id}/progress")).json()
    assert fresh["waiting"] is False
    await _age(kernel, tenant.id, job.id, HEARTBEAT * 2, created_at=1)
    stale = (await browser.get(f"/console/imports/{import_id}/progress")).json()
    assert stale["waiting"] is True and stale["label"] == "等待处理进程…" and not stale["finished"]
