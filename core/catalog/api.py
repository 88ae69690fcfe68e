"""Catalog API: ``/api/v1/products`` (list, create) and ``/api/v1/products/{product_id}`` (read, change)."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get, patch, post
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.catalog import services
from core.catalog.schemas import ProductCreate, ProductFilter, ProductOut, ProductPage, ProductUpdate
from tenants.guards import provide_db, require_scope


class CatalogController(Controller):
    path = "/api/v1/products"
    tags = ["catalog"]
    dependencies = {"db": Provide(provide_db)}

    @get("/", guards=[require_scope("catalog:read")])
    async def list_products(
        self,
        db: AsyncSession,
        kind: str | None = None,
        status: str | None = None,
        brand: str | None = None,
        category: str | None = None,
        tag: str | None = None,
        q: Annotated[str | None, Parameter(max_length=100)] = None,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=services.MAX_PAGE)] = 50,
    ) -> ProductPage:
        """Products newest first, filtered by kind, status, brand, category, tag and ``q`` (SKU or name)."""
        filters = ProductFilter(kind=kind, status=status, brand=brand, category=category, tag=tag, q=q)
        return await services.list_products(db, filters, cursor, limit)

    @post("/", guards=[require_scope("catalog:write")])
    async def create_product(self, db: AsyncSession, data: ProductCreate) -> ProductOut:
        """Create a product or a bundle; ``409 sku_taken`` when the SKU is used."""
        return await services.create_product(db, data)

    @get("/{product_id:uuid}", guards=[require_scope("catalog:read")])
    async def get_product(self, db: AsyncSession, product_id: uuid.UUID) -> ProductOut:
        return await services.get_product(db, product_id)

    @patch("/{product_id:uuid}", guards=[require_scope("catalog:write")])
    async def update_product(self, db: AsyncSession, product_id: uuid.UUID, data: ProductUpdate) -> ProductOut:
        """Change the fields sent (``null`` clears a nullable field); ``kind`` cannot change."""
        return await services.update_product(db, product_id, data)
