"""Periodic risk housekeeping, enqueued per tenant by the scheduler (queue ``maintenance``).

Embedded mode keeps counters, failures and device sightings in the database; once their window has ended
they count nothing, and this job deletes them (Redis keys expire on their own).
"""

from __future__ import annotations

import structlog

from core.db.context import require_tenant
from core.jobs.context import current_env
from core.jobs.registry import job
from core.risk import counters, engine
from core.risk.services import load_config

log = structlog.get_logger("kaquan.risk.jobs")


@job("purge_risk_counters", queue="maintenance", max_retries=5)
async def purge_risk_counters_job() -> None:
    """Delete risk counters of ended windows and stale failure and device rows of the tenant in context."""
    tenant_id = require_tenant()
    async with current_env().db().transaction() as session:
        config = await load_config(session, tenant_id)
        deleted = await counters.purge_expired(session, tenant_id, engine.now(), config.tz)
    log.info("risk_counters_purged", tenant_id=str(tenant_id), deleted=deleted)
