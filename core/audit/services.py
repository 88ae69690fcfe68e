"""Append to and verify the per-tenant audit chain.

``record`` queues an event on the session; the link is made in ``before_commit`` — the transaction's
last step — under a row lock on the tenant's chain head, so a tenant's writes are serialised only for
the length of a commit (and other tenants not at all).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections import defaultdict
from typing import Any

import msgspec
from sqlalchemy import event, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from core.audit.context import Actor, current_actor
from core.audit.models import AuditEvent, AuditHead
from core.db.base import utcnow
from core.db.context import cross_tenant, require_tenant
from core.db.ids import new_id

GENESIS = "0" * 64
_PENDING = "kaquan_audit_pending"


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
    """Queue an audit event; it is linked and written when this transaction commits."""
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    who = actor or current_actor()
    sync.info.setdefault(_PENDING, []).append(
        {
            "tenant_id": tenant_id or require_tenant(),
            "occurred_at": utcnow(),
            "actor_type": who.type,
            "actor_id": who.id,
            "action": action,
            "object_type": object_type,
            "object_id": str(object_id),
            "data": msgspec.to_builtins(data or {}),
        }
    )


async def ensure_head(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Create the chain head of a new tenant (at onboarding, before any event)."""
    session.add(AuditHead(tenant_id=tenant_id, last_seq=0, last_hash=GENESIS))
    await session.flush()


@event.listens_for(Session, "before_commit")
def _link_pending(session: Session) -> None:
    pending: list[dict[str, Any]] = session.info.pop(_PENDING, [])
    if not pending:
        return
    by_tenant: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for ev in pending:
        by_tenant[ev["tenant_id"]].append(ev)
    with cross_tenant("audit chain link"):  # explicit tenant_id predicates below; RLS still applies
        for tenant_id in sorted(by_tenant):
            events = by_tenant[tenant_id]
            head = session.execute(
                select(AuditHead).where(AuditHead.tenant_id == tenant_id).with_for_update()
            ).scalar_one_or_none()
            if head is None:
                head = AuditHead(tenant_id=tenant_id, last_seq=0, last_hash=GENESIS)
                session.add(head)
            seq, prev = head.last_seq, head.last_hash
            rows = []
            for ev in events:
                seq += 1
                ev = {**ev, "seq": seq, "id": new_id()}
                ev["prev_hash"] = prev
                ev["hash"] = prev = link_hash(prev, ev)
                rows.append(ev)
            session.execute(insert(AuditEvent), rows)
            head.last_seq, head.last_hash = seq, prev
            session.flush()


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


async def verify_chain(session: AsyncSession, tenant_id: uuid.UUID, batch: int = 5000) -> ChainReport:
    """Recompute the tenant's chain; report the first event whose link or content does not match."""
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
