"""Jobs API: a long job's progress (``GET /api/v1/jobs/{job_id}``)."""

from __future__ import annotations

import uuid

from litestar import Controller, get
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from core.jobs import progress
from core.jobs.progress import JobOut
from tenants.guards import provide_db, require_scope


class JobsController(Controller):
    path = "/api/v1/jobs"
    tags = ["jobs"]
    dependencies = {"db": Provide(provide_db)}
    guards = [require_scope("jobs:read")]

    @get("/{job_id:uuid}")
    async def job(self, db: AsyncSession, job_id: uuid.UUID) -> JobOut:
        """Status and progress (done/total, percent) of one of the tenant's jobs."""
        return progress.job_out(await progress.get(db, job_id))
