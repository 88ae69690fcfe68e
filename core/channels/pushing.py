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
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import case, select, update
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


#: The columns a push reads and the alert checks look at (plain rows: no ORM objects on the hot path).
_COLUMNS = (Listing.id, Listing.sku, Listing.status, Listing.quota, Listing.sold, Listing.quota_kind,
            Listing.quota_value, Listing.low_watermark_bp, Listing.price_fen, Listing.version,
            Listing.push_attempts, Listing.channel_available, Listing.drift_since, Listing.low_since,
            Listing.account_id, Listing.product_id)


def _held_for_channel(li: Any) -> int:
    return int(li.quota) if li.status == "active" else 0


def _is_low(li: Any) -> bool:
    """Under the low watermark: what is left is below ``low_watermark_bp`` of the allotment (a fixed quota's
    number; for a share, what it had before this round of sales: left + sold)."""
    if li.status != "active" or li.low_watermark_bp <= 0:
        return False
    base = li.quota_value if li.quota_kind == "fixed" else li.quota + li.sold
    return bool(base > 0 and li.quota * BP < li.low_watermark_bp * base)


def _reference(account_id: uuid.UUID, items: list[StockItem]) -> str:
    """The same batch (same listings at the same versions) always has the same reference (idempotent)."""
    digest = hashlib.sha256("|".join(f"{i.listing_id}:{i.version}" for i in items).encode()).hexdigest()[:24]
    return f"{account_id}:{digest}"


async def _dirty(session: AsyncSession, account_id: uuid.UUID, after: uuid.UUID | None, limit: int) -> list[Any]:
    q = select(*_COLUMNS).where(Listing.account_id == account_id, Listing.version > Listing.pushed_version)
    if after is not None:
        q = q.where(Listing.id > after)
    return list((await session.execute(q.order_by(Listing.id).limit(limit))).all())


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
                worst = max(worst, await _record_failure(session, rows, f"{exc.reason}: {exc.detail}"))
            report.failed += len(items)
            if not exc.retryable:
                worst = max(worst, 1)
            continue
        async with db.transaction() as session:
            worst = max(worst, await _record_result(session, rows, items, result, report))
        if len(rows) < batch:
            break
    if worst:
        report.retry_in = backoff(worst)
        async with db.transaction() as session:
            await _schedule_retry(session, account_id, worst, report.retry_in)
    log.info("channel_stock_pushed", account=str(account_id), pushed=report.pushed, failed=report.failed,
             rejected=report.rejected, calls=report.calls)
    return report


async def _record_failure(session: AsyncSession, rows: list[Any], error: str) -> int:
    """Every item of a failed call: the error and one more attempt. Returns the highest attempt count."""
    await _mark_failed(session, [(li.id, error) for li in rows], _batch_range(rows))
    return max((li.push_attempts + 1 for li in rows), default=0)


def _batch_range(rows: list[Any]) -> tuple[Any, ...]:
    """The batch's account and id range, beside its ids: the rows are read in id order for one account, so
    these bound the update to an index range of the batch's rows (``ix_listings_sync``). Without them
    PostgreSQL could not use the ids behind the row-level-security qual and read every listing of the tenant
    against the 500 ids (~0.5 s per batch of 500 with three accounts at once; see docs/benchmarks.md)."""
    ids = [li.id for li in rows]
    return (Listing.account_id == rows[0].account_id, Listing.id >= min(ids), Listing.id <= max(ids))


async def _mark_failed(session: AsyncSession, failed: list[tuple[uuid.UUID, str]], bounds: tuple[Any, ...]) -> None:
    by_error: dict[str, list[uuid.UUID]] = defaultdict(list)
    for lid, error in failed:
        by_error[(error or "refused")[:500]].append(lid)
    for error, ids in by_error.items():
        await session.execute(
            update(Listing).where(*bounds, Listing.id.in_(ids))
            .values(push_error=error, push_attempts=Listing.push_attempts + 1),
            execution_options={"synchronize_session": False},
        )


async def _record_result(session: AsyncSession, rows: list[Any], items: list[StockItem], result: StockPushResult,
                         report: PushReport) -> int:
    """Record each item's answer (one UPDATE per group of listings recorded alike, so a bulk push takes a few
    statements per batch) and raise the drift and low-watermark alerts; returns the highest attempt count of
    the items to retry (0: none)."""
    by_id = {str(li.id): li for li in rows}  # as read for this push (a later change pushes again)
    answers = {a.sku: a for a in result.items}
    now = utcnow()
    worst = 0
    failed: list[tuple[uuid.UUID, str]] = []
    # listings recorded alike (same version pushed, same answer, same alert state) share one statement
    pushed: dict[tuple[int, int | None, dt.datetime | None, dt.datetime | None], list[uuid.UUID]] = defaultdict(list)
    for item in items:
        li = by_id[item.listing_id]
        answer = answers.get(item.sku)
        if answer is None or answer.status != "ok":
            failed.append((li.id, answer.detail if answer else "no answer for this item"))
            if answer is not None and answer.status == "rejected" and not answer.retryable:
                report.rejected += 1
            else:
                report.failed += 1
                worst = max(worst, li.push_attempts + 1)
            continue
        report.pushed += 1
        reported = answer.channel_available if answer.channel_available is not None else li.channel_available
        key = (item.version, reported, _check_drift(session, li, item, reported, now, report),
               _check_low(session, li, now, report))
        pushed[key].append(li.id)
    await _mark_failed(session, failed, _batch_range(rows))
    for (version, reported, drift_since, low_since), ids in pushed.items():
        await session.execute(
            update(Listing).where(*_batch_range(rows), Listing.id.in_(ids)).values(
                pushed_version=case((Listing.pushed_version > version, Listing.pushed_version), else_=version),
                pushed_at=now, push_error="", push_attempts=0, channel_available=reported,
                drift_since=drift_since, low_since=low_since),
            execution_options={"synchronize_session": False},
        )
    return worst


def _check_drift(session: AsyncSession, li: Any, item: StockItem, reported: int | None, now: dt.datetime,
                 report: PushReport) -> dt.datetime | None:
    """Drift: the channel holds a different number than the one we pushed (and hold now). Returns the
    listing's new ``drift_since``; the alert is raised when the drift starts."""
    expected = _held_for_channel(li)
    drifting = reported is not None and reported != expected and item.available == expected
    if not drifting:
        return None
    if li.drift_since is not None:
        return li.drift_since
    report.drifted.append(li.sku)
    emit(session, "channel.stock_drift", li.id, {"listing_id": li.id, "account_id": li.account_id, "sku": li.sku,
                                                 "expected": expected, "channel_available": reported})
    record(session, "listing.stock_drift", "listing", li.id, {"expected": expected, "channel_available": reported})
    return now


def _check_low(session: AsyncSession, li: Any, now: dt.datetime, report: PushReport) -> dt.datetime | None:
    """The listing's new ``low_since``; ``channel.listing_low`` is emitted when it falls under the watermark."""
    if not _is_low(li):
        return None
    if li.low_since is not None:
        return li.low_since
    report.low.append(li.sku)
    emit(session, "channel.listing_low", li.id,
         {"listing_id": li.id, "account_id": li.account_id, "product_id": li.product_id, "sku": li.sku,
          "quota": li.quota, "sold": li.sold, "low_watermark_bp": li.low_watermark_bp})
    return now


async def _schedule_retry(session: AsyncSession, account_id: uuid.UUID, attempts: int, delay: dt.timedelta) -> None:
    when = utcnow() + delay
    await enqueue_for_tenants(
        session, PUSH_ACTOR, {"account_id": str(account_id)},
        business_key=f"{PUSH_ACTOR}:{account_id}:retry:{attempts}:{when.replace(microsecond=0).isoformat()}",
        tenant_ids=[require_tenant()], available_at=when,
    )
