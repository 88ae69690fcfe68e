"""Operator API ``/api/platform/v1``: login, plans, tenants (onboard, list, suspend, resume)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from core.kernel import Kernel
from tenants import onboarding, registry
from tenants.guards import provide_db, require_operator
from tenants.operators import authenticate_operator, issue_operator_token
from tenants.schemas import PlanCreate, PlanOut, StatusChange, TenantCreate, TenantCreated, TenantOut


class OperatorLogin(msgspec.Struct, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(max_length=254)]
    password: Annotated[str, msgspec.Meta(max_length=200)]


class OperatorTokenOut(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int


def kernel_of(request: Request[Any, Any, Any]) -> Kernel:
    return request.app.state.kernel


class PlatformLoginController(Controller):
    path = "/api/platform/v1"
    tags = ["platform"]
    dependencies = {"db": Provide(provide_db)}

    @post("/login", status_code=200)
    async def login(
        self, request: Request[Any, Any, Any], db: AsyncSession, data: OperatorLogin
    ) -> OperatorTokenOut:
        """Exchange an operator's e-mail and password for a bearer token."""
        kernel = kernel_of(request)
        op = await authenticate_operator(kernel, data.email, data.password)
        token, ttl = await issue_operator_token(kernel, db, op)
        return OperatorTokenOut(token, "Bearer", ttl)


class PlatformController(Controller):
    path = "/api/platform/v1"
    tags = ["platform"]
    guards = [require_operator]
    dependencies = {"db": Provide(provide_db)}

    @get("/plans")
    async def list_plans(self, db: AsyncSession) -> list[PlanOut]:
        return [onboarding.plan_out(p) for p in await onboarding.list_plans(db)]

    @post("/plans")
    async def create_plan(self, request: Request[Any, Any, Any], db: AsyncSession, data: PlanCreate) -> PlanOut:
        """Create a plan. ``allowed_connectors`` must name connectors an installed plugin provides, or ``*``."""
        known = request.app.state.jobs.plugins.known_connector_ids()
        return onboarding.plan_out(await onboarding.create_plan(db, data, known_connectors=known))

    @get("/tenants")
    async def list_tenants(self, db: AsyncSession) -> list[TenantOut]:
        return await onboarding.list_tenants(db)

    @post("/tenants")
    async def create_tenant(
        self, request: Request[Any, Any, Any], db: AsyncSession, data: TenantCreate
    ) -> TenantCreated:
        """Onboard a tenant. The owner's invite link is in the response, once."""
        return await onboarding.create_tenant(kernel_of(request), db, data)

    @get("/tenants/{tenant_id:uuid}")
    async def get_tenant(self, db: AsyncSession, tenant_id: uuid.UUID) -> TenantOut:
        tenant, plan = await registry.get_tenant(db, tenant_id)
        return onboarding.tenant_out(tenant, plan.code)

    @post("/tenants/{tenant_id:uuid}/suspend", status_code=200)
    async def suspend(self, db: AsyncSession, tenant_id: uuid.UUID, data: StatusChange) -> TenantOut:
        return await onboarding.set_status(db, tenant_id, "suspended", data.reason)

    @post("/tenants/{tenant_id:uuid}/resume", status_code=200)
    async def resume(self, db: AsyncSession, tenant_id: uuid.UUID, data: StatusChange) -> TenantOut:
        return await onboarding.set_status(db, tenant_id, "active", data.reason)
