"""Stores API: ``/api/v1/stores`` (list, create) and ``/api/v1/stores/{store_id}`` (read, change,
deactivate, reactivate). A create with an ``Idempotency-Key`` is answered once (the idempotency middleware)."""

from __future__ import annotations

import uuid

from litestar import Controller, get, patch, post
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from core.stores import services
from core.stores.schemas import StoreIn, StoreList, StoreOut, StoreUpdate
from tenants.guards import provide_db, require_scope


class StoreController(Controller):
    path = "/api/v1/stores"
    tags = ["stores"]
    dependencies = {"db": Provide(provide_db)}

    @get("/", guards=[require_scope("stores:read")])
    async def list_stores(self, db: AsyncSession, active_only: bool = False) -> StoreList:
        """The tenant's stores, active first, then by code (``active_only`` leaves out deactivated ones)."""
        return await services.list_out(db, active_only=active_only)

    @post("/", status_code=201, guards=[require_scope("stores:write")])
    async def create_store(self, db: AsyncSession, data: StoreIn) -> StoreOut:
        """Create a store; ``409 store_exists`` when its code or name is taken."""
        return services.store_out(await services.create_store(db, data))

    @get("/{store_id:uuid}", guards=[require_scope("stores:read")])
    async def get_store(self, db: AsyncSession, store_id: uuid.UUID) -> StoreOut:
        return services.store_out(await services.get_store(db, store_id))

    @patch("/{store_id:uuid}", guards=[require_scope("stores:write")])
    async def update_store(self, db: AsyncSession, store_id: uuid.UUID, data: StoreUpdate) -> StoreOut:
        """Change the fields sent; ``active: false`` deactivates the store (no more redemptions there)."""
        return services.store_out(await services.update_store(db, store_id, data))

    @post("/{store_id:uuid}/deactivate", status_code=200, guards=[require_scope("stores:write")])
    async def deactivate(self, db: AsyncSession, store_id: uuid.UUID) -> StoreOut:
        """Deactivate (停用): the store's history stays, it takes no more redemptions."""
        return services.store_out(await services.set_active(db, store_id, False))

    @post("/{store_id:uuid}/activate", status_code=200, guards=[require_scope("stores:write")])
    async def activate(self, db: AsyncSession, store_id: uuid.UUID) -> StoreOut:
        """Reactivate (启用) a deactivated store."""
        return services.store_out(await services.set_active(db, store_id, True))
