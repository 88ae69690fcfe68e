"""Complaints API: ``/api/v1/channel-orders/{order_id}/complaints`` (record, list)."""

from __future__ import annotations

import uuid

from litestar import Controller, get, post
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from core.channel_orders.complaints import ComplaintIn, ComplaintOut, list_complaints, record_complaint
from tenants.guards import provide_db, require_scope


class ComplaintController(Controller):
    path = "/api/v1/channel-orders/{order_id:uuid}/complaints"
    tags = ["channel orders"]
    dependencies = {"db": Provide(provide_db)}

    @post("/", status_code=201, guards=[require_scope("channel_orders:write")])
    async def record(self, db: AsyncSession, order_id: uuid.UUID, data: ComplaintIn) -> ComplaintOut:
        """Record a buyer's complaint (``category``, ``note``, ``occurred_at``); ``404 channel_order_not_found``."""
        return await record_complaint(db, order_id, data)

    @get("/", guards=[require_scope("channel_orders:read")])
    async def list_all(self, db: AsyncSession, order_id: uuid.UUID) -> list[ComplaintOut]:
        """The order's complaints, oldest first."""
        return await list_complaints(db, order_id)
