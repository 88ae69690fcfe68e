"""Background jobs of the import pipeline. Payloads carry the import id only — never a code."""

from __future__ import annotations

import uuid

from core.inventory.importing.services import GENERATE_JOB, IMPORT_JOB, run_generation, run_import
from core.jobs.context import current_env
from core.jobs.registry import job

#: Imports and generations of a million codes take about a minute; allow plenty.
TIME_LIMIT_MS = 2 * 3600_000


@job(IMPORT_JOB, queue="default", max_retries=0, time_limit_ms=TIME_LIMIT_MS)
async def import_codes(import_id: str) -> None:
    """Run a confirmed import (one transaction; a failure is recorded on the import, not retried)."""
    env = current_env()
    await run_import(env.db(), env.keys, uuid.UUID(import_id))


@job(GENERATE_JOB, queue="default", max_retries=0, time_limit_ms=TIME_LIMIT_MS)
async def generate_codes(import_id: str) -> None:
    """Generate the requested codes into a new batch (one transaction)."""
    env = current_env()
    await run_generation(env.db(), env.keys, uuid.UUID(import_id))
