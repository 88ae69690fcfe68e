"""Progress of long jobs (done/total): created by whoever starts the job, advanced by the actor.

The console shows it as a progress bar, the CLI as a rich bar, the API at ``GET /api/v1/jobs/{id}``.
Statuses: ``queued`` → ``running`` → ``succeeded`` | ``failed``.

``state`` is what the job looks like now: its status, except ``waiting`` when it is unfinished and has not
started, or its progress has not moved, for longer than the worker heartbeat timeout
(``KAQUAN_WORKER_HEARTBEAT_TIMEOUT_SECONDS``): no live worker seems to hold it (none running, or the one
that had it died and another takes it over shortly). The console then says "等待处理进程…".
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.base import utcnow
from core.errors import Conflict, NotFound, ValidationFailed
from core.jobs.models import JobRecord
from core.settings import Settings

FINISHED = ("succeeded", "failed")
#: Default of :func:`waiting_after` (the default worker heartbeat timeout).
WAITING_AFTER = dt.timedelta(seconds=Settings().worker_heartbeat_timeout_seconds)


def waiting_after(settings: Settings) -> dt.timedelta:
    """How long an unfinished job may stand still before it is shown as waiting for a worker."""
    return dt.timedelta(seconds=settings.worker_heartbeat_timeout_seconds)


class JobOut(msgspec.Struct):
    """A job's progress as the API returns it."""

    id: uuid.UUID
    kind: str
    status: str
    state: str
    done: int
    total: int
    percent: float
    message: str | None
    result: dict[str, Any]
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    progressed_at: dt.datetime | None


def job_state(
    job: JobRecord, *, stale_after: dt.timedelta = WAITING_AFTER, now: dt.datetime | None = None
) -> str:
    """``job.status``, or ``waiting`` when an unfinished job stood still longer than ``stale_after``."""
    if job.status in FINISHED:
        return job.status
    last = job.progressed_at or job.started_at or job.created_at
    if last is not None and (now or utcnow()) - last > stale_after:
        return "waiting"
    return job.status


def job_out(
    job: JobRecord, *, stale_after: dt.timedelta = WAITING_AFTER, now: dt.datetime | None = None
) -> JobOut:
    """The API view of ``job``; ``stale_after`` is :func:`waiting_after` of the settings."""
    percent = 100.0 if job.status == "succeeded" else 0.0
    if job.total > 0:
        percent = round(min(job.done, job.total) * 100.0 / job.total, 1)
    return JobOut(
        id=job.id,
        kind=job.kind,
        status=job.status,
        state=job_state(job, stale_after=stale_after, now=now),
        done=job.done,
        total=job.total,
        percent=percent,
        message=job.message,
        result=dict(job.result or {}),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        progressed_at=job.progressed_at,
    )


async def create(session: AsyncSession, kind: str, total: int = 0) -> JobRecord:
    """A new ``queued`` job of the tenant in context; pass its id to the actor."""
    if total < 0:
        raise ValidationFailed("total must not be negative", "总数不能为负数", code="invalid_total")
    job = JobRecord(kind=kind, total=total, status="queued", result={})
    session.add(job)
    await session.flush()
    return job


async def get(session: AsyncSession, job_id: uuid.UUID) -> JobRecord:
    job = (await session.execute(select(JobRecord).where(JobRecord.id == job_id))).scalar_one_or_none()
    if job is None:
        raise NotFound("Job not found", "任务不存在", code="job_not_found")
    return job


def _check_open(job: JobRecord) -> None:
    if job.status in FINISHED:
        raise Conflict(f"Job already {job.status}", f"任务已结束（{job.status}）", code="job_finished")


async def advance(
    session: AsyncSession,
    job_id: uuid.UUID,
    done: int,
    *,
    total: int | None = None,
    message: str | None = None,
) -> JobRecord:
    """Set how much is done (absolute, never backwards); the first call marks the job ``running``."""
    job = await get(session, job_id)
    _check_open(job)
    if total is not None:
        job.total = max(total, 0)
    before = job.done
    job.done = max(job.done, min(done, job.total) if job.total else done)
    now = utcnow()
    if job.status == "queued":
        job.status, job.started_at, job.progressed_at = "running", now, now
    elif job.done != before:
        job.progressed_at = now
    if message is not None:
        job.message = message
    await session.flush()
    return job


async def finish(session: AsyncSession, job_id: uuid.UUID, result: dict[str, Any] | None = None) -> JobRecord:
    """Mark the job ``succeeded`` with a JSON ``result`` (counts, file names; never secrets)."""
    job = await get(session, job_id)
    _check_open(job)
    now = utcnow()
    job.status, job.finished_at = "succeeded", now
    job.started_at = job.started_at or now
    job.done = max(job.done, job.total)
    job.result = msgspec.to_builtins(result or {})
    await session.flush()
    return job


async def fail(session: AsyncSession, job_id: uuid.UUID, message: str) -> JobRecord:
    """Mark the job ``failed`` with a human message (shown in the console)."""
    job = await get(session, job_id)
    _check_open(job)
    now = utcnow()
    job.status, job.finished_at, job.message = "failed", now, message[:2000]
    job.started_at = job.started_at or now
    await session.flush()
    return job
