"""Append to, seal, list and verify the per-tenant audit chain.

``record`` writes the event in the transaction of the change; the row is never updated afterwards. Shortly
after commit the tenant's events are sealed in blocks, one ``audit_seals`` row per block holding the hash
over the block's events and the block before it (:mod:`core.audit.sealing`): a handful of statements per
block whatever its size, no lock a writer waits for, no dead tuples. An in-process sealer reacts to commits,
a scheduled job catches the rest, and readers (event list, verify) seal first.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from core.audit.context import Actor, current_actor
from core.audit.models import AuditEvent, AuditSeal
from core.audit.sealing import GENESIS, canonical, seal_chain, seal_settled
from core.audit.verification import ChainReport, check_chain, verify_chain
from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.ids import new_id
from core.db.paging import keyset_rows
from core.db.session import KaquanSession

__all__ = [
    "GENESIS", "AuditEventOut", "AuditPage", "ChainReport", "canonical", "check_chain", "list_events",
    "on_commit", "record", "seal_chain", "seal_settled", "verify_chain",
]

_TOUCHED = "kaquan_audit_touched"


class AuditEventOut(msgspec.Struct):
    """One audit event as the API and the console list it; ``block`` is the sealed block holding it, or
    ``None`` while it is pending (sealed moments after its commit)."""

    id: uuid.UUID
    occurred_at: dt.datetime
    actor_type: str
    actor_id: str
    action: str
    object_type: str
    object_id: str
    data: dict[str, Any]
    block: int | None


class AuditPage(msgspec.Struct):
    """A page of events, newest first; ``next_cursor`` is the event id to list before for the next page."""

    items: list[AuditEventOut]
    next_cursor: uuid.UUID | None


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
    mark_recorded(sync, tid)


def mark_recorded(session: AsyncSession | Session, tenant_id: uuid.UUID) -> None:
    """Tell the sealers that this transaction wrote audit events of the tenant (for events inserted
    without :func:`record`, e.g. a Core ``insert(AuditEvent)``): they seal them after the commit."""
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    sync.info.setdefault(_TOUCHED, set()).add(tenant_id)


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


async def list_events(session: AsyncSession, before: uuid.UUID | None, limit: int) -> AuditPage:
    """The tenant's events newest first (by id, a UUIDv7), each with its block or ``None`` when pending.
    What is committed is sealed first (without waiting for another sealer), so few show as pending."""
    tenant_id = require_tenant()
    await seal_chain(session, tenant_id)
    block = (
        select(AuditSeal.block)
        .where(
            AuditSeal.tenant_id == AuditEvent.tenant_id,
            AuditSeal.to_pos > AuditEvent.txid,
            AuditSeal.from_pos <= AuditEvent.txid,
        )
        .order_by(AuditSeal.to_pos)
        .limit(1)
        .correlate(AuditEvent)
        .scalar_subquery()
        .label("block")
    )
    stmt = select(
        AuditEvent.id, AuditEvent.occurred_at, AuditEvent.actor_type, AuditEvent.actor_id, AuditEvent.action,
        AuditEvent.object_type, AuditEvent.object_id, AuditEvent.data, block,
    ).where(AuditEvent.tenant_id == tenant_id)
    page = await keyset_rows(session, stmt, AuditEvent.id, cursor=before, limit=limit)
    return AuditPage(
        [AuditEventOut(r.id, r.occurred_at, r.actor_type, r.actor_id, r.action, r.object_type, r.object_id,
                       r.data, r.block) for r in page.items],
        page.next_cursor,
    )
