"""Listings API: ``/api/v1/listings`` — list products on channel accounts, change their price rules and
quotas, pause and resume them, and read their price history and sync state."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from litestar import Controller, get, patch, post
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.channels import services
from core.channels.schemas import (
    ListingIn,
    ListingOut,
    ListingPage,
    ListingPatch,
    PriceChangePage,
    ProductQuotaOut,
)
from tenants.guards import provide_db, require_scope


class ListingController(Controller):
    path = "/api/v1/listings"
    tags = ["channels"]
    dependencies = {"db": Provide(provide_db)}

    @post("/", status_code=201, guards=[require_scope("listings:write")])
    async def create_listing(self, db: AsyncSession, data: ListingIn) -> ListingOut:
        """List a product on a sales-channel account under the channel's SKU, with a price rule and a quota.

        ``404 account_not_found`` / ``product_not_found``; ``409 quota_above_stock`` when the quota is above
        the stock the product's other listings leave; ``422 floor_above_ceiling`` for a price rule whose
        floor is above its ceiling; ``409 listing_sku_taken`` when the account already lists the SKU.
        """
        return await services.create_listing(db, data)

    @get("/", guards=[require_scope("listings:read")])
    async def list_listings(
        self,
        db: AsyncSession,
        account_id: Annotated[uuid.UUID | None, Parameter(query="account")] = None,
        product_id: Annotated[uuid.UUID | None, Parameter(query="product")] = None,
        listing_status: Annotated[Literal["active", "paused"] | None, Parameter(query="status")] = None,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> ListingPage:
        """Listings newest first, filtered by ``account``, ``product`` and ``status``, with their quota, price,
        sync state (``synced`` / ``pending`` / ``failing``), drift and low-watermark flags."""
        return await services.list_listings(db, account_id=account_id, product_id=product_id,
                                            status=listing_status, cursor=cursor, limit=limit)

    @get("/{listing_id:uuid}", guards=[require_scope("listings:read")])
    async def get_listing(self, db: AsyncSession, listing_id: uuid.UUID) -> ListingOut:
        """One listing (``404 listing_not_found``, also for another tenant's id)."""
        return await services.get_listing(db, listing_id)

    @patch("/{listing_id:uuid}", guards=[require_scope("listings:write")])
    async def update_listing(self, db: AsyncSession, listing_id: uuid.UUID, data: ListingPatch) -> ListingOut:
        """Change the title, price rule, quota, low watermark or split rule; omitted fields stay."""
        return await services.update_listing(db, listing_id, data)

    @post("/{listing_id:uuid}/pause", status_code=200, guards=[require_scope("listings:write")])
    async def pause_listing(self, db: AsyncSession, listing_id: uuid.UUID) -> ListingOut:
        """Stop selling on the channel (pushed as inactive; orders for it are refused)."""
        return await services.pause_listing(db, listing_id)

    @post("/{listing_id:uuid}/resume", status_code=200, guards=[require_scope("listings:write")])
    async def resume_listing(self, db: AsyncSession, listing_id: uuid.UUID) -> ListingOut:
        """Sell again."""
        return await services.resume_listing(db, listing_id)

    @get("/{listing_id:uuid}/prices", guards=[require_scope("listings:read")])
    async def price_history(
        self,
        db: AsyncSession,
        listing_id: uuid.UUID,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> PriceChangePage:
        """Every price change of the listing, newest first: from, to, why (``manual``, ``rule``, ``expiry``,
        ``pressure``) and how it was computed."""
        return await services.price_history(db, listing_id, cursor=cursor, limit=limit)

    @get("/products/{product_id:uuid}/quota", guards=[require_scope("listings:read")])
    async def product_quota(self, db: AsyncSession, product_id: uuid.UUID) -> ProductQuotaOut:
        """A product's available stock and the sum of its listings' quotas (never above it)."""
        return await services.product_quota(db, product_id)
