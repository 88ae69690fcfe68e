"""Tenant console member pages: the member list (search by phone, external id, name or e-mail) and a
member's page with the codes they hold and their grants. Phones show masked only."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from admin_ui.console_pages import shell
from admin_ui.grants_pages import GRANT_STATUS_LABELS, product_names
from admin_ui.rendering import render
from core.errors import ValidationFailed
from core.grants.services import items_of_member, list_grants
from core.inventory.models import Code
from core.inventory.vault import masked
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
        db: AsyncSession,
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
        self, request: Request[Any, Any, Any], db: AsyncSession, member_id: uuid.UUID
    ) -> Response[str]:
        """One member: contact (masked), tags, the codes they hold and their latest grants."""
        member = await services.get_member(db, member_id)
        items = await items_of_member(db, member_id)
        codes = (
            {
                c.id: c
                for c in (
                    await db.execute(select(Code).where(Code.id.in_([i.code_id for i in items])))
                ).scalars()
            }
            if items
            else {}
        )
        grants = (await list_grants(db, member_id=member_id, limit=PAGE))[:PAGE]
        products = await product_names(
            db, {c.product_id for c in codes.values()} | {g.product_id for g in grants}
        )
        held = [
            {
                "item": i,
                "masked": masked(codes[i.code_id].last4),
                "product": products.get(codes[i.code_id].product_id),
            }
            for i in items
        ]
        ctx = await shell(request, db)
        ctx.update(
            member=services.member_out(member),
            held=held,
            grants=grants,
            products=products,
            grant_labels=GRANT_STATUS_LABELS,
        )
        return render(request, "console/members/detail.html", ctx)
