"""``GET /api/v1/events``: the tenant's event feed (cursor pagination)."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import FieldError, ValidationFailed
from core.events.services import EVENT_TYPES, EventPage, list_events
from tenants.guards import provide_db, require_scope


class EventsController(Controller):
    path = "/api/v1/events"
    tags = ["events"]
    dependencies = {"db": Provide(provide_db)}
    guards = [require_scope("events:read")]

    @get("/")
    async def events(
        self,
        db: AsyncSession,
        cursor: Annotated[uuid.UUID | None, Parameter(query="cursor")] = None,
        type_: Annotated[str | None, Parameter(query="type")] = None,
        limit: Annotated[int, Parameter(query="limit", ge=1, le=500)] = 100,
    ) -> EventPage:
        """Events oldest first; pass ``next_cursor`` back as ``cursor``; ``type`` filters (comma list)."""
        types = [t for t in (type_ or "").split(",") if t]
        unknown = [t for t in types if t not in EVENT_TYPES]
        if unknown:
            raise ValidationFailed(f"Unknown event types: {', '.join(unknown)}", f"未知事件类型：{', '.join(unknown)}",
                                   errors=[FieldError(field="type", message="unknown event type")])
        return await list_events(db, cursor, types, limit)
