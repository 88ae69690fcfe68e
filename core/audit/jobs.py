"""Scheduled sealing of the audit chain (catches events written by workers and the CLI)."""

from __future__ import annotations

import structlog

from core.audit.services import seal_chain
from core.db.context import require_tenant
from core.jobs.context import current_env
from core.jobs.registry import job

log = structlog.get_logger("kaquan.audit.jobs")


@job("seal_audit_chain", queue="maintenance", max_retries=5)
async def seal_audit_chain() -> None:
    """Seal the tenant's pending audit events."""
    async with current_env().db().sessionmaker() as session:
        sealed = await seal_chain(session, require_tenant())
    log.info("audit_sealed", events=sealed)
