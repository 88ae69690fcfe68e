"""Claim-link API: ``POST /api/v1/grants/{grant_id}/claim-link``."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, post
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from core.claims import links
from core.claims.schemas import ClaimLinkCreate, ClaimLinkOut
from tenants.guards import principal_of, provide_db, require_scope

NO_STORE = {"Cache-Control": "no-store"}


class ClaimLinkController(Controller):
    path = "/api/v1/grants"
    tags = ["claims"]
    dependencies = {"db": Provide(provide_db)}

    @post("/{grant_id:uuid}/claim-link", status_code=201, guards=[require_scope("grants:write")])
    async def create_claim_link(
        self,
        request: Request[Any, Any, Any],
        db: AsyncSession,
        grant_id: uuid.UUID,
        data: ClaimLinkCreate | None = None,
    ) -> Response[ClaimLinkOut]:
        """A signed, expiring link (``/h5/c/<token>``) to the grant's held codes for the member's phone page.

        ``404 grant_not_found``; ``409 grant_voided`` / ``nothing_to_claim``; ``422`` for an
        ``expires_in_seconds`` outside 300..7,776,000 (default 7 days).
        """
        principal = principal_of(request)
        out = await links.create_claim_link(
            db,
            request.app.state.kernel,
            grant_id,
            data or ClaimLinkCreate(),
            client_id=principal.client_pk if principal else None,
        )
        return Response(out, status_code=201, headers=NO_STORE)
