"""Append to, seal and verify the per-tenant audit chain.

``record`` writes the event in the transaction of the change, unsealed. Sealing links events in order
shortly after commit, in blocks, under a row lock on the tenant's chain head (as SQL Server's ledger
does): the allocation benchmark showed that linking inside every transaction serialised all of a
tenant's writes on that lock (docs/benchmarks.md). An in-process sealer reacts to commits, a scheduled
job catches the rest, and readers (event list, verify) seal first, so nothing stays unsealed for long.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import uuid
from collections.abc import Callable
from typing import Any, cast

import msgspec
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, Session

from core.audit.context import Actor, current_actor
from core.audit.models import AuditEvent, AuditHead
from core.db.base import utcnow
from core.db.context import cross_tenant, require_tenant, tenant_context
from core.db.ids import new_id
from core.db.locks import CrossLoopLock
from core.db.paging import keyset_page
from core.db.session import KaquanSession

GENESIS = "0" * 64
_TOUCHED = "kaquan_audit_touched"


class AuditEventOut(msgspec.Struct):
    """One sealed audit event as the API and the console list it."""

    seq: int | None
    occurred_at: dt.datetime
    actor_type: str
    actor_id: str
    action: str
    object_type: str
    object_id: str
    data: dict[str, Any]
    hash: str | None


class AuditPage(msgspec.Struct):
    """A page of events, newest first; ``next_cursor`` is the ``seq`` to list before for the next page."""

    items: list[AuditEventOut]
    next_cursor: int | None


class ChainReport(msgspec.Struct):
    """Result of verifying one tenant's chain."""

    tenant_id: uuid.UUID
    ok: bool
    events_checked: int
    first_broken_seq: int | None = None
    reason: str | None = None


def canonical(ev: dict[str, Any]) -> bytes:
    """The bytes that are hashed: sorted-key compact JSON of the event's content fields."""
    body = {
        "tenant_id": str(ev["tenant_id"]),
        "seq": ev["seq"],
        "occurred_at": ev["occurred_at"].astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor_type": ev["actor_type"],
        "actor_id": ev["actor_id"],
        "action": ev["action"],
        "object_type": ev["object_type"],
        "object_id": ev["object_id"],
        "data": ev["data"],
    }
    return msgspec.json.encode(body, order="sorted")


def link_hash(prev_hash: str, ev: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(ev)).hexdigest()


def record(
    session: AsyncSession | Session,
    action: str,
    object_type: str,
    object_id: object,
    data: dict[str, Any] | None = None,
    *,
    actor: Actor | None = None,
    tenant_id: uuid.UUID | None = None,
) -> None:
    """Write an audit event in this transaction; it is sealed into the chain after commit."""
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    who = actor or current_actor()
    tid = tenant_id or require_tenant()
    sync.add(AuditEvent(
        tenant_id=tid, id=new_id(), occurred_at=utcnow(), actor_type=who.type, actor_id=who.id,
        action=action, object_type=object_type, object_id=str(object_id), data=msgspec.to_builtins(data or {}),
    ))
    sync.info.setdefault(_TOUCHED, set()).add(tid)


async def ensure_head(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Create the chain head of a new tenant (at onboarding, before any event)."""
    session.add(AuditHead(tenant_id=tenant_id, last_seq=0, last_hash=GENESIS))
    await session.flush()


_commit_listeners: list[Callable[[set[uuid.UUID]], None]] = []


def on_commit(listener: Callable[[set[uuid.UUID]], None]) -> Callable[[], None]:
    """Call ``listener(tenant_ids)`` after each commit that recorded events; returns an unsubscribe."""
    _commit_listeners.append(listener)
    return lambda: _commit_listeners.remove(listener)


@event.listens_for(KaquanSession, "after_commit")
def _notify_sealers(session: Session) -> None:
    touched: set[uuid.UUID] = session.info.pop(_TOUCHED, set())
    if touched:
        for listener in list(_commit_listeners):
            listener(touched)


@event.listens_for(KaquanSession, "after_rollback")
def _drop_touched(session: Session) -> None:
    session.info.pop(_TOUCHED, None)


_SQLITE_SEAL_LOCK = CrossLoopLock()


async def seal_chain(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    """Seal the tenant's pending events in a short transaction of its own; returns how many were sealed.

    The head's row lock (PostgreSQL) or a process lock (SQLite: one writer) is held only for that
    transaction; writers never wait on it. The caller's own transaction sees the result on its next read.
    """
    engine = session.bind
    sqlite = engine is not None and engine.dialect.name == "sqlite"
    async with contextlib.AsyncExitStack() as stack:
        if sqlite:
            await stack.enter_async_context(_SQLITE_SEAL_LOCK)
        with tenant_context(tenant_id):
            own_session = AsyncSession(bind=engine, expire_on_commit=False, sync_session_class=KaquanSession)
            async with own_session as own, own.begin():
                return await _link_pending(own, tenant_id)
    return 0


async def _link_pending(session: AsyncSession, tenant_id: uuid.UUID, block: int = 5000) -> int:
    """Link the tenant's unsealed events (in id order) onto its chain."""
    sealed = 0
    with cross_tenant("audit chain seal"):  # explicit tenant_id predicates below; RLS still applies
        head = (await session.execute(
            select(AuditHead).where(AuditHead.tenant_id == tenant_id).with_for_update()
        )).scalar_one_or_none()
        if head is None:
            head = AuditHead(tenant_id=tenant_id, last_seq=0, last_hash=GENESIS)
            session.add(head)
        while True:
            rows = (await session.execute(
                select(AuditEvent).where(AuditEvent.tenant_id == tenant_id, AuditEvent.seq.is_(None))
                .order_by(AuditEvent.id).limit(block)
            )).scalars().all()
            if not rows:
                break
            seq, prev = head.last_seq, head.last_hash
            for row in rows:
                seq += 1
                row.seq, row.prev_hash = seq, prev
                row.hash = prev = link_hash(prev, _content(row))
            head.last_seq, head.last_hash = seq, prev
            await session.flush()
            sealed += len(rows)
            if len(rows) < block:
                break
    return sealed


def _content(row: AuditEvent) -> dict[str, Any]:
    return {c: getattr(row, c) for c in (
        "tenant_id", "seq", "occurred_at", "actor_type", "actor_id", "action", "object_type", "object_id", "data",
    )}


async def verify_chain(session: AsyncSession, tenant_id: uuid.UUID, batch: int = 5000) -> ChainReport:
    """Seal what is pending, then recompute the tenant's chain; report the first event whose link or
    content does not match."""
    await seal_chain(session, tenant_id)
    prev, expected_seq, checked = GENESIS, 1, 0
    last_seq = 0
    while True:
        rows = (
            (
                await session.execute(
                    select(AuditEvent)
                    .where(AuditEvent.tenant_id == tenant_id, AuditEvent.seq > last_seq)
                    .order_by(AuditEvent.seq)
                    .limit(batch)
                )
            )
            .scalars()
            .all()
        )
        if not rows:
            break
        for row in rows:
            ev = {
                c: getattr(row, c)
                for c in (
                    "tenant_id",
                    "seq",
                    "occurred_at",
                    "actor_type",
                    "actor_id",
                    "action",
                    "object_type",
                    "object_id",
                    "data",
                )
            }
            if row.seq != expected_seq:
                return ChainReport(
                    tenant_id, False, checked, expected_seq, f"event {expected_seq} is missing"
                )
            if row.prev_hash != prev:
                return ChainReport(
                    tenant_id, False, checked, row.seq, "prev_hash does not match the previous event"
                )
            if link_hash(prev, ev) != row.hash:
                return ChainReport(tenant_id, False, checked, row.seq, "content does not match its hash")
            prev, expected_seq, checked, last_seq = row.hash, expected_seq + 1, checked + 1, row.seq
    head = (
        await session.execute(select(AuditHead).where(AuditHead.tenant_id == tenant_id))
    ).scalar_one_or_none()
    if head is not None and (head.last_seq != checked or head.last_hash != prev):
        return ChainReport(tenant_id, False, checked, checked + 1, "chain head is ahead of the stored events")
    return ChainReport(tenant_id, True, checked)


async def list_events(session: AsyncSession, before: int | None, limit: int) -> AuditPage:
    """Newest sealed events first (pending events are sealed first, so the list is complete)."""
    await seal_chain(session, require_tenant())
    sealed_seq = cast("InstrumentedAttribute[int]", AuditEvent.seq)  # sealed events (all listed ones) have a seq
    page = await keyset_page(session, select(AuditEvent), sealed_seq, cursor=before, limit=limit)
    items = [
        AuditEventOut(
            r.seq,
            r.occurred_at,
            r.actor_type,
            r.actor_id,
            r.action,
            r.object_type,
            r.object_id,
            r.data,
            r.hash,
        )
        for r in page.items
    ]
    return AuditPage(items, page.next_cursor)
