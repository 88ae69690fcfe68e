"""Campaign API: ``/api/v1/campaigns`` (create, list, read, edit, stop, resume)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.campaigns import services
from core.campaigns.poster import campaign_poster
from core.campaigns.schemas import CampaignCreate, CampaignOut, CampaignPage, CampaignUpdate
from tenants.guards import provide_db, require_scope


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

    @get("/{campaign_id:uuid}/poster", guards=[require_scope("grants:read")], media_type="image/svg+xml")
    async def get_poster(
        self, request: Request[Any, Any, Any], db: AsyncSession, campaign_id: uuid.UUID
    ) -> Response[str]:
        """A printable poster (``image/svg+xml``, as an attachment): the campaign's name, its product and a
        QR code of its ``short_url``; ``404 campaign_not_found``."""
        filename, svg = await campaign_poster(db, request.app.state.kernel, campaign_id)
        return Response(
            svg, media_type="image/svg+xml", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
        )

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
