"""Periodic grant work, enqueued per tenant by the scheduler (queue ``maintenance``): expire the units
whose validity has ended unredeemed. Idempotent by nature (a second run finds nothing to do)."""

from __future__ import annotations

import datetime as dt
import uuid

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.db.base import utcnow
from core.grants.lifecycle import item_move, lock_grant, sync_grant
from core.grants.models import GrantItem
from core.jobs.context import current_env
from core.jobs.registry import job

log = structlog.get_logger("kaquan.grants.jobs")

#: Grants handled per transaction, so a large backlog never holds many grant locks at once.
BATCH = 200


async def expire_items(session: AsyncSession, now: dt.datetime | None = None, limit: int = BATCH) -> int:
    """Move up to ``limit`` grants' held units past their expiry to ``expired`` (state machine event
    ``expire``), then each grant's status; returns how many units expired."""
    now = now or utcnow()
    old, new = item_move("expire")
    grant_ids: list[uuid.UUID] = list(
        (
            await session.execute(
                select(GrantItem.grant_id)
                .where(GrantItem.status == old, GrantItem.expires_at <= now)
                .group_by(GrantItem.grant_id)
                .order_by(GrantItem.grant_id)
                .limit(limit)
            )
        ).scalars()
    )
    expired = 0
    for grant_id in grant_ids:
        locked = await lock_grant(session, grant_id)  # first, as a redemption or a void does
        items = list(
            (
                await session.execute(
                    update(GrantItem)
                    .where(GrantItem.grant_id == grant_id, GrantItem.status == old, GrantItem.expires_at <= now)
                    .values(status=new)
                    .returning(GrantItem.id),
                    execution_options={"synchronize_session": False},
                )
            ).scalars()
        )
        if not items:
            continue
        expired += len(items)
        record(session, "grant.items_expired", "grant", grant_id,
               {"ref": locked.ref if locked else None, "items": sorted(str(i) for i in items)})
        await sync_grant(session, grant_id, "expire", locked=locked)
    return expired


@job("expire_grant_items", queue="maintenance", max_retries=5)
async def expire_grant_items_job() -> None:
    """Expire granted units past their date, a batch of grants per transaction, until none is left."""
    total = 0
    while True:
        async with current_env().db().transaction() as session:
            count = await expire_items(session)
        total += count
        if count == 0:
            break
    log.info("grant_items_expired", count=total)
