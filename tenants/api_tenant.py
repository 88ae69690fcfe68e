"""Tenant API ``/api/v1``: profile, users; and ``POST /oauth/token`` (client credentials)."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.openapi import ResponseSpec
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.context import require_tenant
from core.http.openapi import TokenResponse
from tenants import onboarding
from tenants.guards import provide_db, require_scope
from tenants.oauth import token_response
from tenants.schemas import TenantOut, UserInvite, UserInvited, UserOut
from tenants.users import create_invited_user, get_user, list_users, user_out


class QuotaOut(msgspec.Struct):
    quota: str
    limit: int
    used: int


class TenantProfile(msgspec.Struct):
    tenant: TenantOut
    quotas: list[QuotaOut]


class OAuthController(Controller):
    path = "/oauth"
    tags = ["auth"]
    dependencies = {"db": Provide(provide_db)}

    @post(
        "/token",
        status_code=200,
        request_max_body_size=16_384,
        responses={200: ResponseSpec(TokenResponse, generate_examples=False, description="The access token")},
    )
    async def token(self, request: Request[Any, Any, Any], db: AsyncSession) -> Response[bytes]:
        """OAuth2 client credentials: HTTP Basic (or form) client auth, optional ``scope``."""
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, payload, out_headers = await token_response(
            request.app.state.kernel, db, body, headers, request.url.path
        )
        return Response(
            msgspec.json.encode(payload),
            status_code=status,
            media_type="application/json",
            headers={**out_headers, "Cache-Control": "no-store"},
        )


class TenantApiController(Controller):
    path = "/api/v1"
    tags = ["tenant"]
    dependencies = {"db": Provide(provide_db)}

    @get("/tenant", guards=[require_scope("tenant:read")])
    async def profile(self, db: AsyncSession) -> TenantProfile:
        """The calling tenant's profile, plan quotas and their current use."""
        tenant, plan = await onboarding.get_tenant(db, require_tenant())
        used = await onboarding.quota_usage(db, tenant.id)
        quotas = [
            QuotaOut("users", plan.max_users, used["users"]),
            QuotaOut("api_clients", plan.max_api_clients, used["api_clients"]),
            QuotaOut("requests_per_minute", plan.requests_per_minute, 0),
        ]
        return TenantProfile(onboarding.tenant_out(tenant, plan.code), quotas)

    @get("/users", guards=[require_scope("users:read")])
    async def users(self, db: AsyncSession) -> list[UserOut]:
        return [user_out(u) for u in await list_users(db)]

    @get("/users/{user_id:uuid}", guards=[require_scope("users:read")])
    async def user(self, db: AsyncSession, user_id: uuid.UUID) -> UserOut:
        return user_out(await get_user(db, user_id))

    @post("/users", guards=[require_scope("users:write")])
    async def invite(
        self, request: Request[Any, Any, Any], db: AsyncSession, data: UserInvite
    ) -> UserInvited:
        """Invite a console user; the invite is e-mailed and the link returned once."""
        user, url = await create_invited_user(request.app.state.kernel, db, data.email, data.role, data.name)
        return UserInvited(user_out(user), url)
