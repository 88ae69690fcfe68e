"""Audit API: list a tenant's events and verify its chain (``/api/v1/audit``)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.models import AuditEvent
from core.audit.services import ChainReport, seal_chain, verify_chain
from core.db.context import require_tenant
from core.db.paging import keyset_page
from tenants.guards import provide_db, require_scope


class AuditEventOut(msgspec.Struct):
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
    items: list[AuditEventOut]
    next_cursor: int | None


async def list_events(db: AsyncSession, before: int | None, limit: int) -> AuditPage:
    """Newest sealed events first (pending events are sealed first, so the list is complete)."""
    await seal_chain(db, require_tenant())
    page = await keyset_page(db, select(AuditEvent), AuditEvent.seq, cursor=before, limit=limit)
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


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ["audit"]
    dependencies = {"db": Provide(provide_db)}
    guards = [require_scope("audit:read")]

    @get("/events")
    async def events(
        self,
        db: AsyncSession,
        cursor: Annotated[int | None, Parameter(query="cursor", ge=1)] = None,
        limit: Annotated[int, Parameter(query="limit", ge=1, le=500)] = 50,
    ) -> AuditPage:
        """Newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
        return await list_events(db, cursor, limit)

    @get("/verify")
    async def verify(self, db: AsyncSession) -> ChainReport:
        """Recompute the chain and report the first broken link, if any."""
        tenant_id: uuid.UUID = require_tenant()
        return await verify_chain(db, tenant_id)
