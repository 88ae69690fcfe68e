"""Risk control API under ``/api/v1/risk``: the rule set, blocklists, refusals, flags and lockouts."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post, put
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.risk import engine, services
from core.risk.schemas import (
    Action,
    BlockIn,
    BlockKind,
    BlockOut,
    BlockPage,
    FlagPage,
    LockoutOut,
    LockoutPage,
    RefusalPage,
    RuleSet,
    RuleSetOut,
)
from tenants.guards import provide_db, require_scope

MAX_PAGE = 500
Limit = Annotated[int, Parameter(ge=1, le=MAX_PAGE)]


class RiskController(Controller):
    path = "/api/v1/risk"
    tags = ["risk"]
    dependencies = {"db": Provide(provide_db)}

    @get("/rules", guards=[require_scope("risk:read")])
    async def rules(self, db: AsyncSession) -> RuleSetOut:
        """The tenant's limits, failure velocity and device threshold (``customized: false``: the defaults)."""
        return await services.get_rules(db)

    @put("/rules", guards=[require_scope("risk:manage")])
    async def replace_rules(self, db: AsyncSession, data: RuleSet) -> RuleSetOut:
        """Replace the whole rule set; effective at once in this process, within seconds in the others."""
        return await services.put_rules(db, data)

    @post("/blocklist", status_code=201, guards=[require_scope("risk:manage")])
    async def block(self, request: Request[Any, Any, Any], db: AsyncSession, data: BlockIn) -> BlockOut:
        """Block a phone (kept as its keyed digest), a device id, or an IP address or network (CIDR)."""
        return await services.add_block(db, request.app.state.kernel, data)

    @get("/blocklist", guards=[require_scope("risk:read")])
    async def blocklist(
        self,
        db: AsyncSession,
        kind: BlockKind | None = None,
        cursor: uuid.UUID | None = None,
        limit: Limit = 100,
    ) -> BlockPage:
        return await services.list_blocks(db, kind, cursor, limit)

    @delete("/blocklist/{block_id:uuid}", status_code=204, guards=[require_scope("risk:manage")])
    async def unblock(self, db: AsyncSession, block_id: uuid.UUID) -> None:
        await services.remove_block(db, block_id)

    @get("/refusals", guards=[require_scope("risk:read")])
    async def refusals(
        self,
        db: AsyncSession,
        action: Action | None = None,
        reason: Annotated[str | None, Parameter(max_length=40)] = None,
        cursor: uuid.UUID | None = None,
        limit: Limit = 100,
    ) -> RefusalPage:
        """Refused actions, newest first, with the reason code and a masked subject."""
        await engine.settle()
        return await services.list_refusals(db, cursor, limit, action, reason)

    @get("/flags", guards=[require_scope("risk:read")])
    async def flags(self, db: AsyncSession, cursor: uuid.UUID | None = None, limit: Limit = 100) -> FlagPage:
        """Flags (one device used by many members in a day), newest first."""
        await engine.settle()
        return await services.list_flags(db, cursor, limit)

    @get("/lockouts", guards=[require_scope("risk:read")])
    async def lockouts(
        self, db: AsyncSession, active: bool = False, cursor: uuid.UUID | None = None, limit: Limit = 100
    ) -> LockoutPage:
        """Lockouts after repeated failures, newest first (``active=true``: only those still in force)."""
        await engine.settle()
        return await services.list_lockouts(db, engine.now(), active, cursor, limit)

    @delete("/lockouts/{lockout_id:uuid}", status_code=200, guards=[require_scope("risk:manage")])
    async def lift(self, db: AsyncSession, lockout_id: uuid.UUID) -> LockoutOut:
        """Lift an active lockout now (audited)."""
        return await services.lift_lockout(db, lockout_id, engine.now())
