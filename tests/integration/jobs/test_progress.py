"""Job progress records (done/total) and ``GET /api/v1/jobs/{id}``."""

from __future__ import annotations

import uuid

import pytest

from core.db.context import tenant_context
from core.errors import Conflict, NotFound
from core.jobs import progress


async def test_progress_lifecycle(kernel, make_tenant):
    tenant = await make_tenant()
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            job = await progress.create(db, "codes.import", total=200)
            job_id = job.id
            assert progress.job_out(job).status == "queued" and progress.job_out(job).percent == 0
        async with kernel.db.transaction() as db:
            job = await progress.advance(db, job_id, 50)
            assert job.status == "running" and job.started_at is not None
            job = await progress.advance(db, job_id, 20)  # never backwards
            assert job.done == 50 and progress.job_out(job).percent == 25.0
        async with kernel.db.transaction() as db:
            job = await progress.finish(db, job_id, {"imported": 198, "duplicates": 2})
        async with kernel.db.transaction() as db:
            out = progress.job_out(await progress.get(db, job_id))
            assert out.status == "succeeded" and out.done == 200 and out.percent == 100.0
            assert out.result == {"imported": 198, "duplicates": 2} and out.finished_at is not None
            with pytest.raises(Conflict):
                await progress.advance(db, job_id, 10)


async def test_failed_job_keeps_its_message(kernel, make_tenant):
    tenant = await make_tenant()
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            job = await progress.create(db, "grants.bulk", total=10)
            await progress.advance(db, job.id, 3)
            await progress.fail(db, job.id, "supplier refused the order")
            out = progress.job_out(await progress.get(db, job.id))
    assert out.status == "failed" and out.message == "supplier refused the order" and out.done == 3


async def test_jobs_api_shows_progress_to_its_tenant_only(client, kernel, make_tenant, make_api_client):
    mine, other = await make_tenant(), await make_tenant()
    with tenant_context(mine.id):
        async with kernel.db.transaction() as db:
            job = await progress.create(db, "codes.import", total=4)
            await progress.advance(db, job.id, 1)
    creds = await make_api_client(mine, ["jobs:read"])
    r = await client.get(f"/api/v1/jobs/{job.id}", headers=creds.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == str(job.id) and body["kind"] == "codes.import"
    assert (body["status"], body["done"], body["total"], body["percent"]) == ("running", 1, 4, 25.0)

    theirs = await make_api_client(other, ["jobs:read"])
    r = await client.get(f"/api/v1/jobs/{job.id}", headers=theirs.headers)
    assert r.status_code == 404 and r.json()["code"] == "job_not_found"
    r = await client.get(f"/api/v1/jobs/{uuid.uuid4()}", headers=creds.headers)
    assert r.status_code == 404

    no_scope = await make_api_client(mine, ["tenant:read"])
    r = await client.get(f"/api/v1/jobs/{job.id}", headers=no_scope.headers)
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"
    assert (await client.get(f"/api/v1/jobs/{job.id}")).status_code == 401


async def test_unknown_job_is_not_found(kernel, make_tenant):
    tenant = await make_tenant()
    with tenant_context(tenant.id), pytest.raises(NotFound):
        async with kernel.db.transaction() as db:
            await progress.get(db, uuid.uuid4())
