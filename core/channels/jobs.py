"""Channel listing jobs: the coalesced stock push of one account, and the periodic sweep.

``push_channel_stock`` runs once per account and window (see :mod:`core.channels.sync`). The sweep
(``sync_channel_stock``, every few minutes per tenant) catches what no event announced: expiry steps that
moved with time, stock taken by grants or expiry (quotas shrink with it), pushes whose transaction raced the
window's job, and accounts that were paused and came back.
"""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.channels.models import Listing
from core.channels.pushing import push_account
from core.channels.quotas import rebalance
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
    """Resize every listed product's quotas to its stock, reprice by the rules, and queue the push of every
    account with listings the channel has not seen (past their backoff)."""
    products = list((await session.execute(select(Listing.product_id).distinct())).scalars())
    for product_id in sorted(products):
        await rebalance(session, product_id)
    repriced = await reprice(session)
    now = utcnow()
    accounts = set((await session.execute(
        select(Listing.account_id).where(Listing.version > Listing.pushed_version).distinct()
    )).scalars())
    for account_id in sorted(accounts):
        await request_push(session, account_id, now=now)
    return {"products": len(products), "repriced": repriced, "accounts": len(accounts)}


@job("sync_channel_stock", queue="maintenance", max_retries=3)
async def sync_channel_stock() -> None:
    async with current_env().db().transaction() as session:
        done = await sweep(session)
    log.info("channel_stock_swept", **done)
