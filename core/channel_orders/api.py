"""Channel orders API: ``/api/v1/channel-orders`` (list, read, retry a failed delivery, per-channel sales),
and the public callback route ``POST /channels/{account}/callback`` the channels call (no login: the
account's connector verifies each request with that account's own secret)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.channel_orders import queries
from core.channel_orders.callbacks import Runtime, callback_request, handle_callback
from core.channel_orders.delivery import retry_order
from core.channel_orders.schemas import ChannelOrderOut, ChannelOrderPage, SalesReport
from core.errors import NotFound
from tenants.guards import provide_db, require_scope


class ChannelOrderController(Controller):
    path = "/api/v1/channel-orders"
    tags = ["channel orders"]
    dependencies = {"db": Provide(provide_db)}

    @get("/", guards=[require_scope("channel_orders:read")])
    async def list_orders(
        self,
        db: AsyncSession,
        account_id: Annotated[uuid.UUID | None, Parameter(query="account")] = None,
        order_status: Annotated[str | None, Parameter(query="status", max_length=20)] = None,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=queries.MAX_PAGE)] = 50,
    ) -> ChannelOrderPage:
        """Channel orders newest first, filtered by ``account`` (connector account id) and ``status``."""
        return await queries.list_orders(db, cursor=cursor, limit=limit, account_id=account_id, status=order_status)

    @get("/sales", guards=[require_scope("channel_orders:read")])
    async def sales(self, db: AsyncSession) -> SalesReport:
        """Per-channel sales today, this week and this month (orders, units, gross, refunded, net; fen)."""
        return await queries.sales_report(db)

    @get("/{order_id:uuid}", guards=[require_scope("channel_orders:read")])
    async def get_order(self, db: AsyncSession, order_id: uuid.UUID) -> ChannelOrderOut:
        """One order with its lines (gross, cost, split rule), masked codes and refunds."""
        return await queries.get_order(db, order_id)

    @post("/{order_id:uuid}/retry", status_code=200, guards=[require_scope("channel_orders:write")])
    async def retry(self, db: AsyncSession, order_id: uuid.UUID) -> ChannelOrderOut:
        """Deliver a ``failed`` order's codes to its channel again. ``409 channel_order_not_retryable``."""
        order = await retry_order(db, order_id)
        return await queries.get_order(db, order.id)


class ChannelCallbackController(Controller):
    """The public route channels call. Not in the OpenAPI document of the tenant API (no tenant auth)."""

    path = "/channels"
    include_in_schema = False

    @post("/{account:str}/callback", status_code=200)
    async def callback(self, request: Request[Any, Any, Any], account: str) -> Response[bytes]:
        """Verify, store once, queue or answer a channel's callback (see :mod:`core.channel_orders.callbacks`)."""
        try:
            account_id = uuid.UUID(account)
        except ValueError:
            raise NotFound("Unknown channel account", "未知的渠道账号", code="channel_account_not_found") from None
        runtime = Runtime(request.app.state.kernel, request.app.state.jobs.plugins)
        body = await request.body()
        reply = await handle_callback(
            runtime, account_id, callback_request(dict(request.headers), dict(request.query_params), body)
        )
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type)
