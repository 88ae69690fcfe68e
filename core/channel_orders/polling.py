"""Order polling: a periodic job per tenant pulls the events of every active channel account that can be
polled (capability ``order_pull``), page by page from the account's saved cursor.

Each page's events are stored in the inbox (once per ``message_id``: a poll that overlaps a callback stores
nothing twice) and the cursor is saved in the same transaction, so it only moves past events that are stored;
a failed call leaves the cursor where it was and the next run starts there again.
"""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy import select

from core.channel_orders.inbox import NO_WORK, store_event
from core.connectors.calls import AccountUnavailable, ConnectorCallFailed, bind_account
from core.connectors.models import ConnectorAccount
from core.db.base import utcnow
from core.jobs.context import JobEnv, current_env
from core.jobs.registry import job
from plugins import OrderPage

log = structlog.get_logger("kaquan.channel_orders")
POLL_ACTOR = "poll_channel_orders"
#: Pages pulled per account per run (the next run goes on from the saved cursor).
MAX_PAGES = 20


async def poll_account(env: JobEnv, account_id: uuid.UUID, *, max_pages: int = MAX_PAGES) -> int:
    """Pull and store the account's new events; returns how many new events were stored."""
    stored = 0
    for _ in range(max_pages):
        async with env.db().transaction() as session:
            try:
                bound = await bind_account(session, await env.keys.cipher(session), env.plugins, account_id,
                                           db=env.db(), kind="sales_channel")
            except AccountUnavailable:
                return stored
            if not bound.supports("order_pull"):
                return stored
            account = await session.get(ConnectorAccount, (bound.tenant_id, account_id))
            cursor = account.order_cursor if account is not None else ""
        try:
            page: OrderPage = await bound.call("pull_orders", cursor, expect=OrderPage, limit=30.0)
        except ConnectorCallFailed as exc:
            log.warning("channel_poll_failed", account=str(account_id), reason=exc.reason)
            return stored
        async with env.db().transaction() as session:
            cipher = await env.keys.cipher(session)
            for event in page.events:
                if (await store_event(session, cipher, account_id, event, source="poll",
                                    queue=event.type not in NO_WORK)).new:
                    stored += 1
            account = (await session.execute(
                select(ConnectorAccount).where(ConnectorAccount.id == account_id).with_for_update()
            )).scalar_one()
            if account.order_cursor == cursor:  # a concurrent poll did not move it meanwhile
                account.order_cursor = page.next_cursor[:500]
            account.orders_polled_at = utcnow()
        if not page.has_more:
            break
    return stored


@job(POLL_ACTOR, queue="maintenance", max_retries=2)
async def poll_channel_orders() -> None:
    """Poll every active channel account of the tenant that can be polled."""
    env = current_env()
    async with env.db().transaction() as session:
        ids = list((await session.execute(
            select(ConnectorAccount.id).where(ConnectorAccount.kind == "sales_channel",
                                              ConnectorAccount.status == "active").order_by(ConnectorAccount.id)
        )).scalars())
    total = 0
    for account_id in ids:
        total += await poll_account(env, account_id)
    if total:
        log.info("channel_orders_polled", accounts=len(ids), events=total)
