"""Maintenance jobs (queue ``maintenance``), enqueued per tenant by the scheduler.

Each deletes only the tenant in context's expired rows, or seals its pending audit events, so it is
naturally idempotent.
"""

from __future__ import annotations

import datetime as dt

import structlog
from sqlalchemy import delete

from core.audit.services import seal_chain
from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.results import rowcount
from core.http.models import IdempotencyRecord
from core.jobs.context import current_env
from core.jobs.models import OutboxMessage, ProcessedMessage
from core.jobs.registry import job
from tenants.models import AccessToken

log = structlog.get_logger("kaquan.jobs.maintenance")
audit_log = structlog.get_logger("kaquan.audit.jobs")

#: Expired access tokens are kept this long (for support questions) before being deleted.
ACCESS_TOKEN_GRACE = dt.timedelta(days=1)
#: ``done`` outbox rows and the processed-message ledger are kept this long.
OUTBOX_RETENTION = dt.timedelta(days=7)
LEDGER_RETENTION = dt.timedelta(days=30)


@job("purge_expired_idempotency_keys", queue="maintenance", max_retries=3)
async def purge_expired_idempotency_keys() -> None:
    """Delete stored ``Idempotency-Key`` responses past their 24 h."""
    tenant_id = require_tenant()
    async with current_env().db().transaction() as session:
        result = await session.execute(
            delete(IdempotencyRecord)
            .where(IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.expires_at < utcnow())
            .execution_options(synchronize_session=False)
        )
    log.info("purged_idempotency_keys", rows=rowcount(result))


@job("purge_expired_access_tokens", queue="maintenance", max_retries=3)
async def purge_expired_access_tokens() -> None:
    """Delete API access tokens expired for more than a day (their digests are useless by then)."""
    tenant_id = require_tenant()
    async with current_env().db().transaction() as session:
        result = await session.execute(
            delete(AccessToken)
            .where(AccessToken.tenant_id == tenant_id, AccessToken.expires_at < utcnow() - ACCESS_TOKEN_GRACE)
            .execution_options(synchronize_session=False)
        )
    log.info("purged_access_tokens", rows=rowcount(result))


@job("purge_job_ledgers", queue="maintenance", max_retries=3)
async def purge_job_ledgers() -> None:
    """Delete delivered outbox rows after 7 days and the processed-message ledger after 30 days."""
    tenant_id = require_tenant()
    now = utcnow()
    async with current_env().db().transaction() as session:
        outbox = await session.execute(
            delete(OutboxMessage)
            .where(
                OutboxMessage.tenant_id == tenant_id,
                OutboxMessage.status == "done",
                OutboxMessage.created_at < now - OUTBOX_RETENTION,
            )
            .execution_options(synchronize_session=False)
        )
        ledger = await session.execute(
            delete(ProcessedMessage)
            .where(
                ProcessedMessage.tenant_id == tenant_id, ProcessedMessage.created_at < now - LEDGER_RETENTION
            )
            .execution_options(synchronize_session=False)
        )
    log.info("purged_job_ledgers", outbox=rowcount(outbox), processed=rowcount(ledger))


@job("seal_audit_chain", queue="maintenance", max_retries=5)
async def seal_audit_chain() -> None:
    """Seal the tenant's pending audit events (catches events written by workers and the CLI, which
    run no in-process sealer)."""
    async with current_env().db().sessionmaker() as session:
        sealed = await seal_chain(session, require_tenant())
    audit_log.info("audit_sealed", events=sealed)
