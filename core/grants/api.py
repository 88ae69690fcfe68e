"""Grants API: ``POST /api/v1/grants`` (Idempotency-Key required), list, read and void.

Codes come back masked (``last4``); a client that also holds ``codes:reveal`` gets the number and PIN in
plaintext (audited, ``Cache-Control: no-store``). A repeated request with the same Idempotency-Key is
answered by the idempotency middleware with the first response, byte for byte: the same codes.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError
from core.grants import services
from core.grants.schemas import GrantOut, GrantPage, GrantRequest, VoidRequest
from core.grants.search import grant_search
from core.inventory.custody import may_reveal
from tenants.guards import principal_of, provide_db, require_scope

NO_STORE = {"Cache-Control": "no-store"}


def _require_idempotency_key(request: Request[Any, Any, Any]) -> None:
    if not request.headers.get("idempotency-key", "").strip():
        raise DomainError(
            "POST /api/v1/grants needs an Idempotency-Key header, so a retried request never grants twice",
            "POST /api/v1/grants 必须携带 Idempotency-Key 请求头，以免重试时重复发放",
            code="idempotency_key_required",
            status=400,
        )


class GrantController(Controller):
    path = "/api/v1/grants"
    tags = ["grants"]
    dependencies = {"db": Provide(provide_db)}

    @post("/", status_code=201, guards=[require_scope("grants:write")])
    async def create_grant(
        self, request: Request[Any, Any, Any], db: AsyncSession, data: GrantRequest
    ) -> Response[GrantOut]:
        """Grant codes of a product to a member or a contact and queue their delivery.

        ``400 idempotency_key_required`` without the header; ``404 product_not_found``; ``422`` for a bad
        quantity (1..100) or phone; ``409 out_of_stock``; ``429 risk_refused``.
        """
        _require_idempotency_key(request)
        kernel = request.app.state.kernel
        principal = principal_of(request)
        client = request.client
        grant = await services.create_grant(
            db,
            kernel,
            data,
            source="api",
            client_id=principal.client_pk if principal else None,
            ip=client.host if client else None,
            device_id=request.headers.get("x-device-id"),
        )
        reveal = may_reveal(principal)
        out = await services.grant_out(db, kernel, grant, reveal=reveal)
        return Response(out, status_code=201, headers=NO_STORE if reveal else {})

    @get("/", guards=[require_scope("grants:read")])
    async def list_grants(
        self,
        request: Request[Any, Any, Any],
        db: AsyncSession,
        member_id: Annotated[uuid.UUID | None, Parameter(query="member")] = None,
        grant_status: Annotated[str | None, Parameter(query="status", max_length=20)] = None,
        campaign_ref: Annotated[str | None, Parameter(max_length=120)] = None,
        phone: Annotated[str | None, Parameter(max_length=40)] = None,
        code: Annotated[str | None, Parameter(max_length=200)] = None,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=services.MAX_PAGE)] = 50,
    ) -> GrantPage:
        """Grants newest first (codes masked), filtered by ``member`` (id), ``status``, ``campaign_ref``,
        ``phone`` (the member's mobile number; ``+86``, spaces and dashes allowed; ``422 invalid_phone``) and
        ``code`` (a card number handed out in the grant). Phone and code are looked up by their keyed digest."""
        matching = await grant_search(db, request.app.state.kernel, phone=phone, code=code)
        rows = await services.list_grants(
            db,
            after=cursor,
            limit=limit,
            member_id=member_id,
            status=grant_status,
            campaign_ref=campaign_ref,
            matching=matching,
        )
        return await services.grant_page(db, rows, limit)

    @get("/{grant_id:uuid}", guards=[require_scope("grants:read")])
    async def get_grant(
        self, request: Request[Any, Any, Any], db: AsyncSession, grant_id: uuid.UUID
    ) -> GrantOut:
        """One grant with its codes, masked."""
        return await services.grant_out(db, request.app.state.kernel, await services.get_grant(db, grant_id))

    @post("/{grant_id:uuid}/void", status_code=200, guards=[require_scope("grants:write")])
    async def void_grant(
        self, request: Request[Any, Any, Any], db: AsyncSession, grant_id: uuid.UUID, data: VoidRequest
    ) -> GrantOut:
        """Void an undelivered grant (``created`` or ``delivery_failed``); its codes go back to stock.

        ``409 grant_not_voidable`` once delivered or voided.
        """
        kernel = request.app.state.kernel
        grant = await services.void_grant(db, kernel, grant_id, data.reason)
        return await services.grant_out(db, kernel, grant)
