"""Webhook API (scope ``webhooks:manage``): subscriptions under ``/api/v1/webhooks``, the delivery log and
resend under ``/api/v1/webhooks/{id}/deliveries`` and ``/api/v1/webhook-deliveries/{id}``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.webhooks import services
from core.webhooks.probe import send_test
from core.webhooks.schemas import (
    DeliveryOut,
    DeliveryPage,
    SecretRotated,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookPage,
    WebhookTestResult,
    WebhookUpdate,
)
from tenants.guards import provide_db, require_scope

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _private_ok(request: Request[Any, Any, Any]) -> bool:
    return services.allow_private(request.app.state.kernel.settings)


class WebhooksController(Controller):
    path = "/api/v1/webhooks"
    tags = ["webhooks"]
    dependencies = {"db": Provide(provide_db)}
    guards = [require_scope("webhooks:manage")]

    @post("/", response_headers=NO_STORE)
    async def create_webhook(
        self, request: Request[Any, Any, Any], db: AsyncSession, data: WebhookCreate
    ) -> WebhookCreated:
        """Subscribe a URL to event types (or ``["*"]``); the signing ``secret`` is in this answer only."""
        cipher = await request.app.state.kernel.keys.cipher(db)
        return await services.create_subscription(db, cipher, data, private_ok=_private_ok(request))

    @get("/")
    async def list_webhooks(
        self,
        db: AsyncSession,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=services.MAX_PAGE)] = 50,
    ) -> WebhookPage:
        """Subscriptions, newest first (never with their secrets)."""
        return await services.list_subscriptions(db, cursor, limit)

    @post("/{webhook_id:uuid}/test", status_code=200)
    async def test_webhook(self, request: Request[Any, Any, Any], webhook_id: uuid.UUID) -> WebhookTestResult:
        """Send a signed ``webhook.test`` event to this endpoint now (even if paused) and answer what the
        receiver did: ``success``, its ``status_code`` or the ``error``, ``duration_ms``. The attempt is in the
        delivery log (``delivery_id``); it is never retried. ``404 webhook_not_found``."""
        return await send_test(request.app.state.kernel, webhook_id, private_ok=_private_ok(request))

    @get("/{webhook_id:uuid}")
    async def get_webhook(self, db: AsyncSession, webhook_id: uuid.UUID) -> WebhookOut:
        return services.subscription_out(await services.get_subscription(db, webhook_id))

    @patch("/{webhook_id:uuid}")
    async def update_webhook(
        self, request: Request[Any, Any, Any], db: AsyncSession, webhook_id: uuid.UUID, data: WebhookUpdate
    ) -> WebhookOut:
        """Change ``url``, ``events``, ``description`` or ``active``."""
        return await services.update_subscription(db, webhook_id, data, private_ok=_private_ok(request))

    @delete("/{webhook_id:uuid}")
    async def delete_webhook(self, db: AsyncSession, webhook_id: uuid.UUID) -> None:
        """Delete the subscription and its delivery log."""
        await services.delete_subscription(db, webhook_id)

    @post("/{webhook_id:uuid}/rotate-secret", status_code=200, response_headers=NO_STORE)
    async def rotate_secret(
        self, request: Request[Any, Any, Any], db: AsyncSession, webhook_id: uuid.UUID
    ) -> SecretRotated:
        """Replace the signing secret; the new one is in this answer only."""
        cipher = await request.app.state.kernel.keys.cipher(db)
        return await services.rotate_secret(db, cipher, webhook_id)

    @get("/{webhook_id:uuid}/deliveries")
    async def list_deliveries(
        self,
        db: AsyncSession,
        webhook_id: uuid.UUID,
        status: str | None = None,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=services.MAX_PAGE)] = 50,
    ) -> DeliveryPage:
        """The subscription's deliveries, newest first; ``status`` filters (pending, succeeded, failed, gave_up)."""
        return await services.list_deliveries(db, webhook_id, status=status, cursor=cursor, limit=limit)


class WebhookDeliveriesController(Controller):
    path = "/api/v1/webhook-deliveries"
    tags = ["webhooks"]
    dependencies = {"db": Provide(provide_db)}
    guards = [require_scope("webhooks:manage")]

    @get("/{delivery_id:uuid}")
    async def get_delivery(self, db: AsyncSession, delivery_id: uuid.UUID) -> DeliveryOut:
        return services.delivery_out(await services.get_delivery(db, delivery_id))

    @post("/{delivery_id:uuid}/resend", status_code=202)
    async def resend(self, db: AsyncSession, delivery_id: uuid.UUID) -> DeliveryOut:
        """Send a finished delivery again (``409 webhook_delivery_pending`` while it is still retrying)."""
        return await services.resend(db, delivery_id)
