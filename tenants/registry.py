"""The tenant registry, read side: a tenant with its plan (by id or slug) and the plan's quotas in use.

It sits below :mod:`tenants.onboarding`, :mod:`tenants.users` and :mod:`tenants.clients`, which all check
quotas here, so none of them imports another to do so.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound, QuotaExceeded
from tenants.models import ApiClient, Plan, Tenant, User


async def get_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> tuple[Tenant, Plan]:
    """The tenant and its plan; :class:`NotFound` (``tenant_not_found``) if there is no such tenant."""
    row = (await session.execute(select(Tenant, Plan).join(Plan).where(Tenant.id == tenant_id))).first()
    if row is None:
        raise NotFound("Tenant not found", "租户不存在", code="tenant_not_found")
    return row[0], row[1]


async def get_tenant_by_slug(session: AsyncSession, slug: str) -> Tenant | None:
    """The tenant with this slug, or None."""
    return (await session.execute(select(Tenant).where(Tenant.slug == slug))).scalar_one_or_none()


async def quota_usage(session: AsyncSession, tenant_id: uuid.UUID) -> dict[str, int]:
    """Current use of the counted quotas of the tenant in context."""
    users = await session.scalar(select(func.count()).select_from(User).where(User.status != "disabled"))
    clients = await session.scalar(
        select(func.count()).select_from(ApiClient).where(ApiClient.revoked_at.is_(None))
    )
    return {"users": int(users or 0), "api_clients": int(clients or 0)}


async def check_quota(session: AsyncSession, tenant_id: uuid.UUID, quota: str, adding: int = 1) -> None:
    """Raise :class:`QuotaExceeded` if adding ``adding`` more would pass the plan's limit."""
    _tenant, plan = await get_tenant(session, tenant_id)
    limits = {"users": plan.max_users, "api_clients": plan.max_api_clients}
    used = (await quota_usage(session, tenant_id))[quota]
    if used + adding > limits[quota]:
        raise QuotaExceeded(
            f"Your plan {plan.code!r} allows {limits[quota]} {quota.replace('_', ' ')}; {used} in use",
            f"当前套餐 {plan.code!r} 最多允许 {limits[quota]} 个（{quota}），已使用 {used} 个",
            extra={"quota": quota, "limit": limits[quota], "used": used},
        )
