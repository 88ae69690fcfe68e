"""The outbox relay: moves committed outbox rows to the broker.

Each pass finds the tenants with due rows (one read across tenants, the named bypass ``outbox relay``), then
claims each tenant's rows in that tenant's transaction (on PostgreSQL with ``FOR UPDATE SKIP LOCKED`` so
several relays never take the same row; both statements use the partial indexes of unfinished rows, led by
``tenant_id``), enqueues each with its tenant id, business key and outbox id, and marks it ``enqueued``. When the broker is down the row stays
``pending`` with ``attempts`` + 1, ``last_error`` and a backed-off ``available_at``: nothing is lost.
A row still ``enqueued`` ``KAQUAN_OUTBOX_REDELIVER_SECONDS`` (default 5 min) after it was sent (the broker
lost it, e.g. Redis restarted without persistence) is sent again; actors are idempotent on the business
key, so nothing is done twice. A row a worker has started is ``running`` and is re-sent only after
:data:`RUNNING_REDELIVER_AFTER` (a dead worker's message comes back sooner through the broker's heartbeat).
Workers set the row to ``running`` when they start it, then ``done`` (or ``failed`` once retries are
exhausted).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import Collection, Sequence
from typing import Any

import dramatiq
import msgspec
import structlog
from dramatiq.errors import ActorNotFound
from sqlalchemy import ColumnElement, Select, and_, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.base import utcnow
from core.db.context import cross_tenant, tenant_context
from core.db.session import Database
from core.jobs.broker import BUSINESS_KEY_OPTION, OUTBOX_OPTION, TENANT_OPTION
from core.jobs.models import OutboxMessage

log = structlog.get_logger("kaquan.jobs.relay")

#: An ``enqueued`` row not ``done`` after this long is sent again (the broker may have lost it); the
#: default of ``KAQUAN_OUTBOX_REDELIVER_SECONDS``.
REDELIVER_AFTER = dt.timedelta(minutes=5)
#: A ``running`` row (a worker took the message, perhaps retrying it with backoff) is sent again only after
#: this long since its last attempt began: longer than any job's time limit and dramatiq's retry backoff.
#: A worker that died holding it is covered sooner by the broker's heartbeat (``KaquanRedisBroker``).
RUNNING_REDELIVER_AFTER = dt.timedelta(hours=3)
MAX_BACKOFF = dt.timedelta(minutes=10)
#: Seconds the relay waits between full passes on SQLite, so other writers get the one write lock.
SQLITE_WRITER_GAP = 0.05


class RelayReport(msgspec.Struct):
    """What one relay pass did."""

    enqueued: int = 0
    redelivered: int = 0
    failed: int = 0
    broker_error: str | None = None
    more: bool = False
    """A tenant's share of the pass was full: more rows are probably waiting."""


def backoff(attempts: int) -> dt.timedelta:
    """Delay before retrying a row that failed ``attempts`` times: 5 s, 10 s, 20 s … capped at 10 min."""
    return min(dt.timedelta(seconds=5 * 2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def _message(broker: dramatiq.Broker, row: OutboxMessage) -> dramatiq.Message[object]:
    actor = broker.get_actor(row.actor)
    # typed Any: dramatiq's ``**options`` sits beside ``args: tuple``, which a dict of str would also fill
    options: dict[str, Any] = {
        TENANT_OPTION: str(row.tenant_id),
        BUSINESS_KEY_OPTION: row.business_key,
        OUTBOX_OPTION: str(row.id),
    }
    return actor.message_with_options(kwargs=dict(row.payload or {}), **options)


def _status_is(status: str) -> ColumnElement[bool]:
    """``status = '<status>'`` with the value written into the SQL: the partial indexes' predicates must be
    provable from the statement itself, whichever plan PostgreSQL caches (a bound value is unknown to a
    generic plan)."""
    return OutboxMessage.status == literal_column(f"'{status}'")


def _work(now: dt.datetime, redeliver_after: dt.timedelta) -> ColumnElement[bool]:
    """Rows to send: due ``pending`` ones, and ``enqueued``/``running`` ones past their redelivery time."""
    return or_(
        and_(_status_is("pending"), OutboxMessage.available_at <= now),
        and_(_status_is("enqueued"), OutboxMessage.enqueued_at <= now - redeliver_after),
        and_(
            _status_is("running"),
            OutboxMessage.enqueued_at <= now - max(redeliver_after, RUNNING_REDELIVER_AFTER),
        ),
    )


def tenants_with_work(
    now: dt.datetime,
    redeliver_after: dt.timedelta,
    limit: int,
    tenant_ids: Collection[uuid.UUID] | None = None,
    business_keys: Collection[str] | None = None,
) -> Select[uuid.UUID]:
    """The tenants with rows to send, oldest work first (no lock: the claims lock)."""
    query = (
        select(OutboxMessage.tenant_id)
        .where(_work(now, redeliver_after))
        .group_by(OutboxMessage.tenant_id)
        .order_by(func.min(OutboxMessage.available_at))
        .limit(limit)
    )
    if tenant_ids is not None:
        query = query.where(OutboxMessage.tenant_id.in_(list(tenant_ids)))
    if business_keys is not None:
        query = query.where(OutboxMessage.business_key.in_(list(business_keys)))
    return query


def claim(
    tenant_id: uuid.UUID,
    now: dt.datetime,
    redeliver_after: dt.timedelta,
    limit: int,
    business_keys: Collection[str] | None = None,
    *,
    postgresql: bool = True,
) -> Select[OutboxMessage]:
    """One tenant's rows to send, oldest first, locked (``SKIP LOCKED``: another relay takes others)."""
    query = (
        select(OutboxMessage)
        .where(OutboxMessage.tenant_id == tenant_id, _work(now, redeliver_after))
        .order_by(OutboxMessage.available_at)
        .limit(limit)
    )
    if business_keys is not None:
        query = query.where(OutboxMessage.business_key.in_(list(business_keys)))
    return query.with_for_update(skip_locked=True) if postgresql else query


async def relay_once(
    db: Database,
    broker: dramatiq.Broker,
    *,
    limit: int = 100,
    now: dt.datetime | None = None,
    tenant_ids: Collection[uuid.UUID] | None = None,
    business_keys: Collection[str] | None = None,
    redeliver_after: dt.timedelta = REDELIVER_AFTER,
) -> RelayReport:
    """One relay pass over at most ``limit`` due rows; for tests and ``kaquan`` commands too.

    ``now`` is the clock used to pick due rows and stamp them; ``tenant_ids`` and ``business_keys``
    limit the pass to some tenants or messages. Stops early at the first broker error (the broker is probably down).

    The pass finds the tenants with work (one read across tenants), then claims and sends each tenant's rows
    in a transaction of that tenant (its RLS context; ``tenant_id = …`` leads the claim, as a database
    distributed by tenant needs to run it on one node). Each tenant gets an equal share of ``limit``; the
    report's ``more`` says a share was full (more rows are waiting).
    """
    now = now or utcnow()
    report = RelayReport()
    if db.dialect == "sqlite":  # one writer: one transaction a pass (a burst of short ones starves other writers)
        return await _relay_together(db, broker, limit, now, redeliver_after, tenant_ids, business_keys, report)
    with cross_tenant("outbox relay"):
        async with db.transaction() as session:
            tenants = list(
                (await session.execute(tenants_with_work(now, redeliver_after, limit, tenant_ids, business_keys)))
                .scalars()
                .all()
            )
    share = -(-limit // len(tenants)) if tenants else 0
    for tenant_id in tenants:
        room = min(share, limit - report.enqueued - report.redelivered - report.failed)
        if room <= 0:
            report.more = True
            break
        with tenant_context(tenant_id):
            taken = await _relay_tenant(db, broker, tenant_id, room, now, redeliver_after, business_keys, report)
        report.more = report.more or taken >= room
        if report.broker_error is not None:
            break
    return report


async def _relay_tenant(
    db: Database,
    broker: dramatiq.Broker,
    tenant_id: uuid.UUID,
    limit: int,
    now: dt.datetime,
    redeliver_after: dt.timedelta,
    business_keys: Collection[str] | None,
    report: RelayReport,
) -> int:
    """Claim and send up to ``limit`` rows of one tenant (in its context); returns how many were claimed."""
    query = claim(tenant_id, now, redeliver_after, limit, business_keys, postgresql=db.dialect == "postgresql")
    async with db.transaction() as session:
        rows = (await session.execute(query)).scalars().all()
        await _send(session, broker, rows, now, report)
    return len(rows)


async def _relay_together(
    db: Database,
    broker: dramatiq.Broker,
    limit: int,
    now: dt.datetime,
    redeliver_after: dt.timedelta,
    tenant_ids: Collection[uuid.UUID] | None,
    business_keys: Collection[str] | None,
    report: RelayReport,
) -> RelayReport:
    """Embedded mode (SQLite): claim and send every tenant's due rows, oldest first, in one transaction."""
    query = select(OutboxMessage).where(_work(now, redeliver_after)).order_by(OutboxMessage.available_at).limit(limit)
    if tenant_ids is not None:
        query = query.where(OutboxMessage.tenant_id.in_(list(tenant_ids)))
    if business_keys is not None:
        query = query.where(OutboxMessage.business_key.in_(list(business_keys)))
    with cross_tenant("outbox relay"):
        async with db.transaction() as session:
            rows = (await session.execute(query)).scalars().all()
            await _send(session, broker, rows, now, report)
    report.more = len(rows) >= limit and report.broker_error is None
    return report


async def _send(
    session: AsyncSession, broker: dramatiq.Broker, rows: Sequence[OutboxMessage], now: dt.datetime,
    report: RelayReport,
) -> None:
    """Mark ``rows`` enqueued and hand them to the broker, in the caller's transaction."""
    for row in rows:
        redelivery = row.status in ("enqueued", "running")
        try:
            message = _message(broker, row)
        except ActorNotFound as exc:
            _failed(row, now, f"unknown actor: {exc}")
            report.failed += 1
            continue
        # Written (and on SQLite write-locked) before the send, so the worker's "done" lands after it.
        row.status, row.enqueued_at = "enqueued", now
        await session.flush()
        try:
            with tenant_context(row.tenant_id):
                await asyncio.to_thread(broker.enqueue, message)
        except Exception as exc:  # boundary: the broker and its middleware; the row waits a pass
            error = f"{type(exc).__name__}: {exc}"[:2000]
            _failed(row, now, error)
            report.failed += 1
            report.broker_error = error
            log.warning("outbox_broker_unavailable", error=error, pending=len(rows))
            break
        if redelivery:
            row.attempts += 1
            report.redelivered += 1
        else:
            report.enqueued += 1


def _failed(row: OutboxMessage, now: dt.datetime, error: str) -> None:
    row.status = "pending"
    row.attempts += 1
    row.last_error = error
    row.available_at = now + backoff(row.attempts)


class OutboxRelay:
    """Runs :func:`relay_once` every ``poll_seconds`` as an asyncio task until stopped."""

    def __init__(
        self,
        db: Database,
        broker: dramatiq.Broker,
        *,
        poll_seconds: float = 1.0,
        batch_size: int = 100,
        redeliver_after: dt.timedelta = REDELIVER_AFTER,
    ) -> None:
        self.db = db
        self.broker = broker
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.redeliver_after = redeliver_after
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="kaquan-outbox-relay")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            full = False
            try:
                report = await relay_once(
                    self.db, self.broker, limit=self.batch_size, redeliver_after=self.redeliver_after
                )
                full = report.broker_error is None and report.more
            except Exception:  # boundary: the relay loop; one failed pass must not stop the next
                log.exception("outbox_relay_pass_failed")
            if full:  # more rows are waiting: go on at once (SQLite: after a gap for the other writers,
                if self.db.dialect == "sqlite":  # whose busy handler polls and would starve behind the loop)
                    await asyncio.sleep(SQLITE_WRITER_GAP)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.poll_seconds)
