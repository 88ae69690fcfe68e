"""Channel listing jobs: the coalesced stock push of one account, and the periodic sweep.

``push_channel_stock`` runs once per account and window (see :mod:`core.channels.sync`). The sweep
(``sync_channel_stock``, every few minutes per tenant) catches what no event announced: expiry steps that
moved with time, stock taken by grants or expiry (quotas shrink with it), pushes whose transaction raced the
window's job, and accounts that were paused and came back.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.channels.models import Listing
from core.channels.pushing import push_account
from core.channels.quotas import available_of, plan_quotas, rebalance
from core.channels.services import reprice, stock_changed
from core.channels.sync import PUSH_ACTOR, REBALANCE_ACTOR, request_push
from core.db.base import utcnow
from core.jobs.context import current_env
from core.jobs.registry import job

log = structlog.get_logger("kaquan.channels.jobs")


@job(PUSH_ACTOR, max_retries=3, min_backoff_ms=5_000)
async def push_channel_stock(account_id: str) -> None:
    """Push the account's changed listings (its own backoff schedules retries of failed items)."""
    env = current_env()
    await push_account(env.db(), env.keys, env.plugins, uuid.UUID(account_id), embedded=env.embedded)


@job(REBALANCE_ACTOR, max_retries=5)
async def rebalance_channel_quotas(product_id: str) -> None:
    """Resize a product's listing quotas to its stock (and reprice) after codes left the stock."""
    async with current_env().db().transaction() as session:
        await stock_changed(session, uuid.UUID(product_id))


async def sweep(session: AsyncSession) -> dict[str, int]:
    """Resize the quotas of every listed product whose stock moved under them (read in two grouped queries;
    only those products are locked and written), reprice by the rules, and queue the push of every account
    with listings the channel has not seen."""
    listings = list((await session.execute(
        select(Listing.id, Listing.product_id, Listing.quota_kind, Listing.quota, Listing.quota_value)
        .order_by(Listing.product_id, Listing.id))).all())
    available = await available_of(session, {li.product_id for li in listings})
    by_product: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for li in listings:
        by_product[li.product_id].append(li)
    resized = 0
    for product_id, rows in sorted(by_product.items()):
        plan = plan_quotas(available.get(product_id, 0), rows)
        if any(plan.quotas[li.id] != li.quota for li in rows):
            await rebalance(session, product_id)
            resized += 1
    repriced = await reprice(session)
    now = utcnow()
    accounts = set((await session.execute(
        select(Listing.account_id).where(Listing.version > Listing.pushed_version).distinct()
    )).scalars())
    for account_id in sorted(accounts):
        await request_push(session, account_id, now=now)
    return {"products": len(by_product), "resized": resized, "repriced": repriced, "accounts": len(accounts)}


@job("sync_channel_stock", queue="maintenance", max_retries=3)
async def sync_channel_stock() -> None:
    async with current_env().db().transaction() as session:
        done = await sweep(session)
    log.info("channel_stock_swept", **done)
