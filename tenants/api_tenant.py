"""Tenant API ``/api/v1``: profile, users, API clients; and ``POST /oauth/token`` (client credentials)."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.openapi import ResponseSpec
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.context import require_tenant
from core.errors import DomainError, Unauthorized
from core.http.openapi import TokenResponse
from tenants import onboarding, registry
from tenants.clients import client_out, create_client, get_client, list_clients, revoke_client
from tenants.guards import principal_of, provide_db, require_scope
from tenants.oauth import token_response
from tenants.schemas import (
    ApiClientCreate,
    ApiClientCreated,
    ApiClientOut,
    Principal,
    TenantOut,
    UserInvite,
    UserInvited,
    UserOut,
)
from tenants.scopes import MANAGE_CLIENTS_SCOPE
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
        tenant, plan = await registry.get_tenant(db, require_tenant())
        used = await registry.quota_usage(db, tenant.id)
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


NO_STORE = {"Cache-Control": "no-store"}


def _caller(request: Request[Any, Any, Any]) -> Principal:
    principal = principal_of(request)
    if principal is None or principal.kind != "client":
        raise Unauthorized("A bearer token is required", "需要提供 Bearer 访问令牌", code="missing_token")
    return principal


class ApiClientsController(Controller):
    """API clients managed by an API client holding ``clients:manage``.

    That scope is given only by an owner or admin in the console (or the CLI); a client holding it can give
    another client only scopes it holds itself, never ``clients:manage``, and can revoke only clients whose
    scopes it holds. So no API credential can create a credential stronger than one an owner or admin made.
    """

    path = "/api/v1/clients"
    tags = ["clients"]
    dependencies = {"db": Provide(provide_db)}

    @get("/", guards=[require_scope(MANAGE_CLIENTS_SCOPE)])
    async def clients(self, db: AsyncSession) -> list[ApiClientOut]:
        """The tenant's API clients, oldest first (never a secret)."""
        return [client_out(c) for c in await list_clients(db)]

    @get("/{client_pk:uuid}", guards=[require_scope(MANAGE_CLIENTS_SCOPE)])
    async def client(self, db: AsyncSession, client_pk: uuid.UUID) -> ApiClientOut:
        """One API client (``404 api_client_not_found`` for an unknown id or another tenant's)."""
        return client_out(await get_client(db, client_pk))

    @post("/", status_code=201, guards=[require_scope(MANAGE_CLIENTS_SCOPE)])
    async def create(
        self, request: Request[Any, Any, Any], db: AsyncSession, data: ApiClientCreate
    ) -> Response[ApiClientCreated]:
        """Create an API client; its ``client_secret`` is in this answer only (stored as a digest).

        ``403 scope_not_grantable`` for ``clients:manage``; ``403 scope_exceeds_caller`` for a scope the
        caller's token lacks; ``403 quota_exceeded`` past the plan's ``api_clients``; ``422`` for an
        unknown scope; ``400 idempotency_key_not_supported`` with an ``Idempotency-Key`` (a replayed answer
        would show the secret again).
        """
        if request.headers.get("idempotency-key") is not None:
            raise DomainError(
                "Creating an API client cannot be replayed: its secret is shown once. Send no Idempotency-Key; "
                "after a failed call, list the clients and revoke any you do not want",
                "创建 API 客户端的应答不能重放（密钥只显示一次）。请勿携带 Idempotency-Key；"
                "调用失败后请列出客户端并吊销多余的",
                code="idempotency_key_not_supported",
                status=400,
            )
        caller = _caller(request)
        client, secret = await create_client(db, data.name, data.scopes, granted_by=caller.scopes)
        return Response(ApiClientCreated(client_out(client), secret), status_code=201, headers=NO_STORE)

    @post("/{client_pk:uuid}/revoke", status_code=200, guards=[require_scope(MANAGE_CLIENTS_SCOPE)])
    async def revoke(self, request: Request[Any, Any, Any], db: AsyncSession, client_pk: uuid.UUID) -> ApiClientOut:
        """Revoke a client and its tokens at once (``403 client_exceeds_caller`` for a stronger client)."""
        return client_out(await revoke_client(db, client_pk, granted_by=_caller(request).scopes))
