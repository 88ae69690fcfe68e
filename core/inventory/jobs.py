"""Periodic inventory work, enqueued per tenant by the scheduler (queue ``maintenance``).

Each job acts on the tenant in context only and is idempotent by nature (a second run finds nothing to do).
"""

from __future__ import annotations

import structlog

from core.inventory.allocation import sweep_lapsed_reservations
from core.inventory.stock import evaluate_alerts, expire_codes
from core.jobs.context import current_env
from core.jobs.registry import job

log = structlog.get_logger("kaquan.inventory.jobs")


@job("expire_codes", queue="maintenance", max_retries=5)
async def expire_codes_job() -> None:
    """Expire codes past their date and write off their cost."""
    async with current_env().db().transaction() as session:
        count = await expire_codes(session)
    log.info("codes_expired", count=count)


@job("sweep_reservations", queue="maintenance", max_retries=5)
async def sweep_reservations_job() -> None:
    """Return the codes of lapsed reservations to stock."""
    async with current_env().db().transaction() as session:
        freed = await sweep_lapsed_reservations(session)
    log.info("reservations_swept", codes_freed=freed)


@job("check_stock_alerts", queue="maintenance", max_retries=5)
async def check_stock_alerts_job() -> None:
    """Open or resolve low-stock and near-expiry alerts (opening one emits a stock event)."""
    async with current_env().db().transaction() as session:
        result = await evaluate_alerts(session)
    log.info("stock_alerts_checked", opened=len(result.opened), resolved=len(result.resolved))
