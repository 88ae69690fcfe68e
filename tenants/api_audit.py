"""Audit API: list the tenant's events and verify its chain (``/api/v1/audit``).

The chain itself is the kernel in :mod:`core.audit`, below ``tenants``; this controller adds the auth
guards on top, so it lives here rather than in the kernel.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import AuditPage, ChainReport, list_events, verify_chain
from core.db.context import require_tenant
from tenants.guards import provide_db, require_scope


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ["audit"]
    dependencies = {"db": Provide(provide_db)}
    guards = [require_scope("audit:read")]

    @get("/events")
    async def events(
        self,
        db: AsyncSession,
        cursor: Annotated[uuid.UUID | None, Parameter(query="cursor")] = None,
        limit: Annotated[int, Parameter(query="limit", ge=1, le=500)] = 50,
    ) -> AuditPage:
        """Newest first, each with its sealed block (``null`` while pending); pass ``next_cursor`` back as
        ``cursor`` for the next page."""
        return await list_events(db, cursor, limit)

    @get("/verify")
    async def verify(self, db: AsyncSession) -> ChainReport:
        """Seal what is committed, recompute every block and report the first broken one, if any."""
        tenant_id: uuid.UUID = require_tenant()
        return await verify_chain(db, tenant_id)
