"""Tenant console member pages: the member list (search by phone, external id, name or e-mail) and a
member's page with the codes they hold and their grants. Phones show masked only."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.di import Provide
from litestar.params import Parameter

from admin_ui.console_pages import shell
from admin_ui.grants_pages import GRANT_STATUS_LABELS
from admin_ui.rendering import render
from core.db.types import DbSession
from core.errors import ValidationFailed
from core.grants.holdings import member_holdings
from core.members import services
from tenants.guards import provide_db, require_permission

PAGE = 50
UuidQuery = Annotated[uuid.UUID | None, Parameter(required=False)]


class MembersController(Controller):
    path = "/members"
    guards = [require_permission("members.read")]
    dependencies = {"db": Provide(provide_db)}

    @get("/")
    async def members(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        q: Annotated[str | None, Parameter(required=False, max_length=120)] = None,
        cursor: UuidQuery = None,
    ) -> Response[str]:
        """Members newest first; ``q`` finds a phone (by digest), an external id, a name or an e-mail."""
        kernel = request.app.state.kernel
        try:
            page = await services.list_members(db, kernel, after=cursor, limit=PAGE, q=q or None)
        except ValidationFailed:
            page = services.MemberPage([], None)
        ctx = await shell(request, db)
        ctx.update(members=page.items, next_cursor=page.next_cursor, q=q or "")
        return render(request, "console/members/list.html", ctx)

    @get("/{member_id:uuid}")
    async def member(
        self, request: Request[Any, Any, Any], db: DbSession, member_id: uuid.UUID
    ) -> Response[str]:
        """One member: contact (masked), tags, the codes they hold and their latest grants."""
        member = await services.get_member(db, member_id)
        holdings = await member_holdings(db, member_id, grant_limit=PAGE)
        ctx = await shell(request, db)
        ctx.update(
            member=services.member_out(member),
            held=holdings.held,
            grants=holdings.grants,
            products=holdings.products,
            grant_labels=GRANT_STATUS_LABELS,
        )
        return render(request, "console/members/detail.html", ctx)
