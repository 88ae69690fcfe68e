"""Seal a tenant's audit events in blocks: one INSERT of an ``audit_seals`` row per block, no event rewritten.

A block covers every event whose position (its transaction's, :class:`core.audit.models.NextPosition`)
lies in ``[from_pos, to_pos)``. On PostgreSQL ``to_pos`` is the horizon ``X = pg_snapshot_xmin(
pg_current_snapshot())``: every transaction below X has ended, so no commit can later add an event to a
sealed block. On SQLite the sealer holds the single write lock (``BEGIN IMMEDIATE``) while it reads, so
every committed event is final and the block ends after the last one.

One sealer per tenant at a time: a transaction-scoped advisory try-lock on PostgreSQL (a second sealer
returns at once; the holder seals for both) and a process lock on SQLite. Per block the sealer runs a
fixed handful of statements whatever the block's size: the lock with the horizon, the last seal, the
events of the range (streamed), the seal INSERT and a probe for events beyond the horizon.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import aclosing, asynccontextmanager
from typing import Any

import msgspec
from sqlalchemy import Row, Select, exists, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.audit.models import AuditEvent, AuditSeal
from core.db.context import tenant_context
from core.db.locks import CrossLoopLock
from core.db.session import KaquanSession

GENESIS = "0" * 64
#: Where block 1 starts: no event has a lower position (migrated events have 0, new ones more).
FIRST_POSITION = 0
_LOCK_KEY = "kaquan-audit-seal:"
_HORIZON = (
    "pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon, "
    "pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax"
)
_TRY_LOCK = text(f"SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0)) AS locked, {_HORIZON}")
_WAIT_LOCK = text(f"SELECT pg_advisory_xact_lock(hashtextextended(:key, 0)) IS NOT NULL AS locked, {_HORIZON}")
_SQLITE_SEAL_LOCK = CrossLoopLock()
_STREAM_ROWS = 2000

#: The columns of an event that its block's hash covers, in this order.
CONTENT = (
    AuditEvent.tenant_id, AuditEvent.id, AuditEvent.txid, AuditEvent.occurred_at, AuditEvent.actor_type,
    AuditEvent.actor_id, AuditEvent.action, AuditEvent.object_type, AuditEvent.object_id, AuditEvent.data,
)


class SealOutcome(msgspec.Struct, frozen=True):
    """What one seal attempt did: events sealed, whether another sealer held the lock (``busy``), and
    whether events remain beyond the horizon (``more``: a transaction below them is still open).
    PostgreSQL also gives ``horizon`` (everything below it is sealed now) and ``xmax`` (every transaction
    that had committed when the attempt began is below it)."""

    sealed: int = 0
    busy: bool = False
    more: bool = False
    horizon: int | None = None
    xmax: int | None = None


def canonical(ev: Row[Any] | dict[str, Any]) -> bytes:
    """The bytes hashed for one event: sorted-key compact JSON of its identity, position and content."""
    m = ev if isinstance(ev, dict) else ev._mapping
    body = {
        "tenant_id": str(m["tenant_id"]),
        "id": str(m["id"]),
        "txid": m["txid"],
        "occurred_at": m["occurred_at"].astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor_type": m["actor_type"],
        "actor_id": m["actor_id"],
        "action": m["action"],
        "object_type": m["object_type"],
        "object_id": m["object_id"],
        "data": m["data"],
    }
    return msgspec.json.encode(body, order="sorted")


class BlockDigest:
    """The running digest of a block's events: ``sha256`` over each event's ``sha256(canonical(event))``."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.count = 0

    def add(self, rows: Iterable[Row[Any]]) -> None:
        for row in rows:
            self._h.update(hashlib.sha256(canonical(row)).digest())
            self.count += 1

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def block_hash(
    prev_hash: str, tenant_id: uuid.UUID, block: int, from_pos: int, to_pos: int, count: int, events_digest: str
) -> str:
    """A block's hash: the previous block's hash, the block's own header (so a seal row's range or count
    cannot be changed alone) and the digest of its events."""
    header = msgspec.json.encode(
        {"tenant_id": str(tenant_id), "block": block, "from_pos": from_pos, "to_pos": to_pos, "events": count},
        order="sorted",
    )
    return hashlib.sha256(prev_hash.encode() + header + events_digest.encode()).hexdigest()


def events_in(tenant_id: uuid.UUID, from_pos: int | None, to_pos: int | None) -> Select[Any]:
    """The tenant's events with position in ``[from_pos, to_pos)`` (open ends when ``None``), in block order."""
    q = select(*CONTENT).where(AuditEvent.tenant_id == tenant_id)
    if from_pos is not None:
        q = q.where(AuditEvent.txid >= from_pos)
    if to_pos is not None:
        q = q.where(AuditEvent.txid < to_pos)
    return q.order_by(AuditEvent.txid, AuditEvent.id)


async def stream_rows(session: AsyncSession, stmt: Select[Any]) -> AsyncGenerator[list[Row[Any]], None]:
    """``stmt``'s rows in partitions, without holding them all (a first block may cover a migrated history)."""
    result = await session.stream(stmt.execution_options(yield_per=_STREAM_ROWS))
    try:
        async for part in result.partitions(_STREAM_ROWS):
            yield list(part)
    finally:
        await result.close()


async def seal_chain(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    """Seal the tenant's events committed so far (up to the horizon) as one block; returns how many.

    Runs in a short transaction of its own on ``session``'s engine, so the caller's transaction is left
    alone. If another sealer of the tenant is at it, returns 0 at once (a try-lock, never a wait): the
    in-process sealers try again next round, and :func:`seal_settled` waits for a complete answer.
    """
    return (await seal_block(_engine(session), tenant_id)).sealed


async def seal_settled(session: AsyncSession, tenant_id: uuid.UUID, settle: float = 2.0) -> int:
    """Seal every event committed before this call, waiting (up to ``settle`` seconds) for the sealer's
    lock and for the horizon to pass those commits; what is still open then stays pending. For readers
    that want a complete answer (verify); returns how many events were sealed."""
    engine = _engine(session)
    ceiling = None
    if engine.dialect.name == "postgresql":  # the caller's own open transaction can never be passed
        ceiling = (await session.execute(text("SELECT pg_current_xact_id_if_assigned()::text::bigint"))).scalar()
    deadline, sealed, target = time.monotonic() + settle, 0, None
    while True:
        outcome = await seal_block(engine, tenant_id, wait=True)
        sealed += outcome.sealed
        if outcome.horizon is None or not outcome.more:  # SQLite, or nothing beyond the horizon
            return sealed
        if target is None:
            target = outcome.xmax if ceiling is None else min(ceiling, outcome.xmax or ceiling)
        if target is None or outcome.horizon >= target or time.monotonic() >= deadline:
            return sealed
        await asyncio.sleep(0.02)


async def current_horizon(engine: AsyncEngine) -> int | None:
    """PostgreSQL's horizon now (None on SQLite): a tenant whose events waited beyond the horizon of its
    last seal attempt is worth another attempt only once this has moved past it."""
    if engine.dialect.name != "postgresql":
        return None
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"))).scalar()


def _engine(session: AsyncSession) -> AsyncEngine:
    engine = session.bind
    if not isinstance(engine, AsyncEngine):
        raise TypeError("the audit sealer needs a session bound to an engine")
    return engine


async def seal_block(engine: AsyncEngine, tenant_id: uuid.UUID, *, wait: bool = False) -> SealOutcome:
    """One seal attempt for the tenant: at most one block, in a transaction of its own."""
    with tenant_context(tenant_id):
        if engine.dialect.name == "sqlite":
            if not wait and _SQLITE_SEAL_LOCK.locked():
                return SealOutcome(busy=True)
            async with _SQLITE_SEAL_LOCK:
                async with _own_transaction(engine) as own:  # reads only: no write lock taken for nothing
                    if not await _sqlite_pending(own, tenant_id):
                        return SealOutcome()
                async with _own_transaction(engine, immediate=True) as own:
                    return await _seal_sqlite(own, tenant_id)
        async with _own_transaction(engine) as own:
            return await _seal_postgresql(own, tenant_id, wait)


async def _sqlite_pending(session: AsyncSession, tenant_id: uuid.UUID) -> bool:
    """Whether the tenant has events after its last block (SQLite, before taking the write lock)."""
    sealed_to = (
        select(func.coalesce(func.max(AuditSeal.to_pos), FIRST_POSITION))
        .where(AuditSeal.tenant_id == tenant_id).scalar_subquery()
    )
    return bool(await session.scalar(select(exists().where(
        AuditEvent.tenant_id == tenant_id, AuditEvent.txid >= sealed_to
    ))))


@asynccontextmanager
async def _own_transaction(engine: AsyncEngine, *, immediate: bool = False) -> AsyncIterator[AsyncSession]:
    own = AsyncSession(bind=engine, expire_on_commit=False, sync_session_class=KaquanSession)
    async with own, own.begin():
        if immediate:  # SQLite: take the single write lock before reading, so nothing commits meanwhile
            conn = await own.connection()
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield own


async def _last_seal(session: AsyncSession, tenant_id: uuid.UUID) -> tuple[int, int, str]:
    """(last block, where the next block starts, its hash) — (0, FIRST_POSITION, GENESIS) for none yet."""
    row = (await session.execute(
        select(AuditSeal.block, AuditSeal.to_pos, AuditSeal.hash)
        .where(AuditSeal.tenant_id == tenant_id).order_by(AuditSeal.block.desc()).limit(1)
    )).first()
    return (row.block, row.to_pos, row.hash) if row else (0, FIRST_POSITION, GENESIS)


async def _seal_postgresql(session: AsyncSession, tenant_id: uuid.UUID, wait: bool) -> SealOutcome:
    lock = (await session.execute(_WAIT_LOCK if wait else _TRY_LOCK, {"key": f"{_LOCK_KEY}{tenant_id}"})).one()
    if not lock.locked:
        return SealOutcome(busy=True)
    # read after the lock: another sealer's block committed before it is seen; the horizon may be a moment
    # older than this statement (it was read with the lock), which only seals a little less
    last_block, from_pos, prev_hash = await _last_seal(session, tenant_id)
    horizon = max(lock.horizon, from_pos)
    digest = BlockDigest()
    if horizon > from_pos:
        async with aclosing(stream_rows(session, events_in(tenant_id, from_pos, horizon))) as parts:
            async for part in parts:
                digest.add(part)
    if digest.count:
        await _insert_seal(session, tenant_id, last_block + 1, from_pos, horizon, digest, prev_hash)
    more = bool(await session.scalar(select(exists().where(
        AuditEvent.tenant_id == tenant_id, AuditEvent.txid >= horizon
    ))))
    return SealOutcome(digest.count, more=more, horizon=horizon, xmax=lock.xmax)


async def _seal_sqlite(session: AsyncSession, tenant_id: uuid.UUID) -> SealOutcome:
    last_block, from_pos, prev_hash = await _last_seal(session, tenant_id)
    digest, to_pos = BlockDigest(), from_pos
    async with aclosing(stream_rows(session, events_in(tenant_id, from_pos, None))) as parts:
        async for part in parts:
            digest.add(part)
            to_pos = part[-1].txid + 1
    if digest.count:
        await _insert_seal(session, tenant_id, last_block + 1, from_pos, to_pos, digest, prev_hash)
    return SealOutcome(digest.count)


async def _insert_seal(
    session: AsyncSession, tenant_id: uuid.UUID, block: int, from_pos: int, to_pos: int, digest: BlockDigest,
    prev_hash: str,
) -> None:
    """INSERT the block's seal (the unique ``(tenant_id, block)`` backs the lock: a second writer fails)."""
    events_digest = digest.hexdigest()
    await session.execute(insert(AuditSeal).values(
        tenant_id=tenant_id, block=block, from_pos=from_pos, to_pos=to_pos, event_count=digest.count,
        events_digest=events_digest, prev_hash=prev_hash,
        hash=block_hash(prev_hash, tenant_id, block, from_pos, to_pos, digest.count, events_digest),
    ))
