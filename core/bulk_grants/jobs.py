"""The bulk-grant job. Its payload carries the bulk grant id only — never a contact or a code."""

from __future__ import annotations

import uuid

from core.bulk_grants.run import run_bulk_grant
from core.bulk_grants.services import BULK_JOB
from core.jobs.context import current_env
from core.jobs.registry import job
from core.kernel import Kernel

#: Ten thousand rows in chunks of 200, one transaction per chunk (minutes, not hours).
TIME_LIMIT_MS = 2 * 3600_000


@job(BULK_JOB, queue="default", max_retries=3, time_limit_ms=TIME_LIMIT_MS)
async def run_bulk_grant_job(bulk_grant_id: str) -> None:
    """Grant the pending rows of a confirmed bulk grant (resumable: a redelivery skips rows already done)."""
    env = current_env()
    kernel = Kernel(settings=env.settings, db=env.db(), keys=env.keys)
    await run_bulk_grant(kernel, uuid.UUID(bulk_grant_id))
