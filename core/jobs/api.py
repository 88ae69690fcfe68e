"""Jobs API: a long job's progress (``GET /api/v1/jobs/{job_id}``)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get
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
    async def job(self, request: Request[Any, Any, Any], db: AsyncSession, job_id: uuid.UUID) -> JobOut:
        """Status and progress (done/total, percent) of one of the tenant's jobs.

        ``state`` is ``waiting`` when the job has not started, or its progress has not moved, for longer
        than the worker heartbeat timeout: it is waiting for a worker to take it (over).
        """
        stale_after = progress.waiting_after(request.app.state.kernel.settings)
        return progress.job_out(await progress.get(db, job_id), stale_after=stale_after)
