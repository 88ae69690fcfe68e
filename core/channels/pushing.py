"""Pushing stock and prices to a channel account: batched, idempotent, retried with backoff; drift and
low-watermark alerts.

One run pushes every listing of the account whose ``version`` is ahead of ``pushed_version``, at most
:data:`BATCH` items per ``push_stock`` call. The connector is called outside any transaction (a slow channel
holds no lock). Each item's answer is recorded on its listing: ``ok`` marks the version pushed and keeps what
the channel reports it holds (``channel_available``); a difference from what we pushed opens a drift alert
(event ``channel.stock_drift``). A failed or retryable item, or a failed call, is retried by a later run
after a backoff that doubles with each attempt (:func:`backoff`). A listing whose quota falls under its low
watermark emits ``channel.listing_low`` once, until it recovers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass, field

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.channels.models import Listing
from core.channels.quotas import BP
from core.channels.sync import PUSH_ACTOR
from core.connectors.calls import AccountUnavailable, BoundAccount, ConnectorCallFailed, bind_account
from core.crypto.services import KeyService
from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.session import Database
from core.events.services import emit
from core.jobs.outbox import enqueue_for_tenants
from core.plugin_host import PluginHost
from plugins.channels import StockItem, StockPush, StockPushResult

log = structlog.get_logger("kaquan.channels.push")

#: Items per ``push_stock`` call.
BATCH = 500
#: Seconds one ``push_stock`` call may take.
PUSH_TIMEOUT = 30.0
BACKOFF_FIRST = dt.timedelta(seconds=5)
BACKOFF_MAX = dt.timedelta(hours=1)


def backoff(attempts: int) -> dt.timedelta:
    """How long to wait before the ``attempts``-th retry: 5 s, 10 s, 20 s … at most an hour."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * (2 ** max(0, attempts - 1)))


@dataclass
class PushReport:
    """What one run did."""

    account_id: uuid.UUID
    pushed: int = 0
    failed: int = 0
    rejected: int = 0
    calls: int = 0
    skipped: str = ""
    drifted: list[str] = field(default_factory=list)
    low: list[str] = field(default_factory=list)
    retry_in: dt.timedelta | None = None


def _held_for_channel(li: Listing) -> int:
    return li.quota if li.status == "active" else 0


def _is_low(li: Listing) -> bool:
    """Under the low watermark: what is left is below ``low_watermark_bp`` of the allotment (a fixed quota's
    number; for a share, what it had before this round of sales: left + sold)."""
    if li.status != "active" or li.low_watermark_bp <= 0:
        return False
    base = li.quota_value if li.quota_kind == "fixed" else li.quota + li.sold
    return base > 0 and li.quota * BP < li.low_watermark_bp * base


def _reference(account_id: uuid.UUID, items: list[StockItem]) -> str:
    """The same batch (same listings at the same versions) always has the same reference (idempotent)."""
    digest = hashlib.sha256("|".join(f"{i.listing_id}:{i.version}" for i in items).encode()).hexdigest()[:24]
    return f"{account_id}:{digest}"


async def _dirty(session: AsyncSession, account_id: uuid.UUID, after: uuid.UUID | None, limit: int) -> list[Listing]:
    q = select(Listing).where(Listing.account_id == account_id, Listing.version > Listing.pushed_version)
    if after is not None:
        q = q.where(Listing.id > after)
    return list((await session.execute(q.order_by(Listing.id).limit(limit))).scalars())


async def _bind(db: Database, keys: KeyService, plugins: PluginHost, account_id: uuid.UUID,
                embedded: bool) -> BoundAccount:
    async with db.transaction() as session:
        cipher = await keys.cipher(session)
        return await bind_account(session, cipher, plugins, account_id, db=db, embedded=embedded,
                                  kind="sales_channel")


async def push_account(db: Database, keys: KeyService, plugins: PluginHost, account_id: uuid.UUID, *,
                       embedded: bool = False, batch: int = BATCH) -> PushReport:
    """Push every listing of the account that the channel has not seen at its current version."""
    report = PushReport(account_id)
    try:
        bound = await _bind(db, keys, plugins, account_id, embedded)
    except AccountUnavailable as exc:
        report.skipped = exc.reason
        log.info("channel_push_skipped", account=str(account_id), reason=exc.reason)
        return report
    after: uuid.UUID | None = None
    worst = 0
    while True:
        async with db.transaction() as session:
            rows = await _dirty(session, account_id, after, batch)
            items = [StockItem(sku=li.sku, listing_id=str(li.id), available=_held_for_channel(li),
                               price_fen=li.price_fen, active=li.status == "active", version=li.version)
                     for li in rows]
        if not items:
            break
        after = rows[-1].id
        push = StockPush(reference=_reference(account_id, items), items=items)
        report.calls += 1
        try:
            result: StockPushResult = await bound.call("push_stock", push, expect=StockPushResult, limit=PUSH_TIMEOUT)
        except ConnectorCallFailed as exc:
            async with db.transaction() as session:
                worst = max(worst, await _record_failure(session, items, f"{exc.reason}: {exc.detail}"))
            report.failed += len(items)
            if not exc.retryable:
                worst = max(worst, 1)
            continue
        async with db.transaction() as session:
            worst = max(worst, await _record_result(session, items, result, report))
        if len(rows) < batch:
            break
    if worst:
        report.retry_in = backoff(worst)
        async with db.transaction() as session:
            await _schedule_retry(session, account_id, worst, report.retry_in)
    log.info("channel_stock_pushed", account=str(account_id), pushed=report.pushed, failed=report.failed,
             rejected=report.rejected, calls=report.calls)
    return report


async def _record_failure(session: AsyncSession, items: list[StockItem], error: str) -> int:
    rows = await _by_id(session, items)
    worst = 0
    for li in rows.values():
        li.push_error, li.push_attempts = error[:500], li.push_attempts + 1
        worst = max(worst, li.push_attempts)
    return worst


async def _by_id(session: AsyncSession, items: list[StockItem]) -> dict[str, Listing]:
    ids = [uuid.UUID(i.listing_id) for i in items]
    return {str(li.id): li for li in (await session.execute(
        select(Listing).where(Listing.id.in_(ids)).with_for_update())).scalars()}


async def _record_result(session: AsyncSession, items: list[StockItem], result: StockPushResult,
                         report: PushReport) -> int:
    """Record each item's answer; returns the highest attempt count of the items to retry (0: none)."""
    rows = await _by_id(session, items)
    answers = {a.sku: a for a in result.items}
    now = utcnow()
    worst = 0
    for item in items:
        li = rows.get(item.listing_id)
        if li is None:
            continue
        answer = answers.get(item.sku)
        if answer is None or answer.status != "ok":
            li.push_error = (answer.detail if answer else "no answer for this item")[:500] or "refused"
            li.push_attempts += 1
            if answer is not None and answer.status == "rejected" and not answer.retryable:
                report.rejected += 1
            else:
                report.failed += 1
                worst = max(worst, li.push_attempts)
            continue
        report.pushed += 1
        li.pushed_version = max(li.pushed_version, item.version)
        li.pushed_at, li.push_error, li.push_attempts = now, "", 0
        if answer.channel_available is not None:
            li.channel_available = answer.channel_available
        _check_drift(session, li, item, now, report)
        _check_low(session, li, now, report)
    return worst


def _check_drift(session: AsyncSession, li: Listing, item: StockItem, now: dt.datetime, report: PushReport) -> None:
    """Drift: the channel holds a different number than the one we pushed (and hold now)."""
    expected = _held_for_channel(li)
    drifting = li.channel_available is not None and li.channel_available != expected and item.available == expected
    if drifting and li.drift_since is None:
        li.drift_since = now
        report.drifted.append(li.sku)
        data = {"listing_id": li.id, "account_id": li.account_id, "sku": li.sku, "expected": expected,
                "channel_available": li.channel_available}
        emit(session, "channel.stock_drift", li.id, data)
        record(session, "listing.stock_drift", "listing", li.id,
               {"expected": expected, "channel_available": li.channel_available})
    elif not drifting and li.drift_since is not None:
        li.drift_since = None


def _check_low(session: AsyncSession, li: Listing, now: dt.datetime, report: PushReport) -> None:
    low = _is_low(li)
    if low and li.low_since is None:
        li.low_since = now
        report.low.append(li.sku)
        emit(session, "channel.listing_low", li.id,
             {"listing_id": li.id, "account_id": li.account_id, "product_id": li.product_id, "sku": li.sku,
              "quota": li.quota, "sold": li.sold, "low_watermark_bp": li.low_watermark_bp})
    elif not low and li.low_since is not None:
        li.low_since = None


async def _schedule_retry(session: AsyncSession, account_id: uuid.UUID, attempts: int, delay: dt.timedelta) -> None:
    when = utcnow() + delay
    await enqueue_for_tenants(
        session, PUSH_ACTOR, {"account_id": str(account_id)},
        business_key=f"{PUSH_ACTOR}:{account_id}:retry:{attempts}:{when.replace(microsecond=0).isoformat()}",
        tenant_ids=[require_tenant()], available_at=when,
    )
