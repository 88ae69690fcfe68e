"""Claim-link and campaign API: ``POST /api/v1/grants/{grant_id}/claim-link``, ``/api/v1/campaigns``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.claims import services
from core.claims.schemas import (
    CampaignCreate,
    CampaignOut,
    CampaignPage,
    CampaignUpdate,
    ClaimLinkCreate,
    ClaimLinkOut,
)
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
        out = await services.create_claim_link(
            db,
            request.app.state.kernel,
            grant_id,
            data or ClaimLinkCreate(),
            client_id=principal.client_pk if principal else None,
        )
        return Response(out, status_code=201, headers=NO_STORE)


class CampaignController(Controller):
    path = "/api/v1/campaigns"
    tags = ["claims"]
    dependencies = {"db": Provide(provide_db)}

    @post("/", status_code=201, guards=[require_scope("grants:write")])
    async def create_campaign(
        self, request: Request[Any, Any, Any], db: AsyncSession, data: CampaignCreate
    ) -> CampaignOut:
        """A public claim page (``url``) handing ``quantity`` units of a product per confirmed phone,
        at most ``per_member_limit`` times each, between ``starts_at`` and ``ends_at``."""
        return await services.create_campaign(db, request.app.state.kernel, data)

    @get("/", guards=[require_scope("grants:read")])
    async def list_campaigns(
        self,
        request: Request[Any, Any, Any],
        db: AsyncSession,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=services.MAX_PAGE)] = 50,
    ) -> CampaignPage:
        """Campaigns newest first (cursor pagination), each with its state and claim counts."""
        return await services.list_campaigns(db, request.app.state.kernel, cursor, limit)

    @get("/{campaign_id:uuid}", guards=[require_scope("grants:read")])
    async def get_campaign(
        self, request: Request[Any, Any, Any], db: AsyncSession, campaign_id: uuid.UUID
    ) -> CampaignOut:
        """One campaign with its state and claim counts; ``404 campaign_not_found``."""
        return await services.campaign_out(db, request.app.state.kernel, campaign_id)

    @patch("/{campaign_id:uuid}", guards=[require_scope("grants:write")])
    async def update_campaign(
        self, request: Request[Any, Any, Any], db: AsyncSession, campaign_id: uuid.UUID, data: CampaignUpdate
    ) -> CampaignOut:
        """Change ``name``, ``quantity``, ``per_member_limit``, ``starts_at`` / ``ends_at`` (``null`` clears)
        or ``active``; the product cannot change. ``422`` under the create rules; editing never reopens a
        stopped campaign."""
        return await services.update_campaign(db, request.app.state.kernel, campaign_id, data)

    @post("/{campaign_id:uuid}/stop", status_code=200, guards=[require_scope("grants:write")])
    async def stop_campaign(
        self, request: Request[Any, Any, Any], db: AsyncSession, campaign_id: uuid.UUID
    ) -> CampaignOut:
        """End the campaign now (state ``stopped``): its page then refuses codes and claims with
        ``409 campaign_not_active``. Idempotent."""
        return await services.stop_campaign(db, request.app.state.kernel, campaign_id)

    @post("/{campaign_id:uuid}/resume", status_code=200, guards=[require_scope("grants:write")])
    async def resume_campaign(
        self, request: Request[Any, Any, Any], db: AsyncSession, campaign_id: uuid.UUID
    ) -> CampaignOut:
        """Undo a stop (idempotent): the campaign is open again if its window and ``active`` allow."""
        return await services.resume_campaign(db, request.app.state.kernel, campaign_id)
