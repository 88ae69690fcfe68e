"""The background fetch of a channel statement (``POST /api/v1/statements/fetch-jobs``): the payload carries
the statement id only; a failure is recorded on the statement (``failed``, nothing stored), not retried."""

from __future__ import annotations

import uuid

from core.errors import DomainError
from core.jobs.context import current_env
from core.jobs.registry import job
from core.settlement.statements import FETCH_JOB, fail_fetch, run_fetch

#: A long range pages for a while; the job may take up to this long.
TIME_LIMIT_MS = 30 * 60_000


@job(FETCH_JOB, queue="default", max_retries=0, time_limit_ms=TIME_LIMIT_MS)
async def fetch_channel_statement(statement_id: str) -> None:
    """Fetch and store the statement's range; why it failed is written on the statement."""
    env = current_env()
    sid = uuid.UUID(statement_id)
    try:
        async with env.db().transaction() as session:
            await run_fetch(session, env.db(), await env.keys.cipher(session), env.plugins, sid)
    except DomainError as exc:
        async with env.db().transaction() as session:
            await fail_fetch(session, sid, exc.en)
