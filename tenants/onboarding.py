"""Plans and tenants: onboarding and status changes (suspend/resume); lookups and quotas are in
:mod:`tenants.registry`."""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.db.base import utcnow
from core.db.session import bind_tenant
from core.errors import Conflict, FieldError, ValidationFailed
from core.kernel import Kernel
from core.plugin_host import installed_connector_ids
from core.validation import check_currency, check_email, check_timezone
from tenants.clients import forget_principals
from tenants.models import Plan, Tenant
from tenants.registry import get_tenant
from tenants.schemas import (
    SLUG_PATTERN,
    PlanCreate,
    PlanNames,
    PlanOut,
    TenantCreate,
    TenantCreated,
    TenantOut,
)
from tenants.users import create_invited_user

DEFAULT_PLANS = (
    PlanCreate(
        code="starter",
        name="Starter",
        name_zh="入门版",
        max_users=5,
        max_api_clients=2,
        requests_per_minute=600,
        allowed_connectors=["*"],
    ),
    PlanCreate(
        code="growth",
        name="Growth",
        name_zh="成长版",
        max_users=50,
        max_api_clients=20,
        requests_per_minute=6000,
        max_stored_codes=5_000_000,
        allowed_connectors=["*"],
    ),
)


def plan_out(plan: Plan) -> PlanOut:
    return PlanOut(
        plan.id,
        plan.code,
        plan.name,
        plan.max_users,
        plan.max_api_clients,
        plan.requests_per_minute,
        plan.max_stored_codes,
        list(plan.allowed_connectors),
        plan.name_zh,
    )


def tenant_out(tenant: Tenant, plan_code: str) -> TenantOut:
    return TenantOut(
        id=tenant.id,
        slug=tenant.slug,
        name=tenant.name,
        plan=plan_code,
        status=tenant.status,
        timezone=tenant.timezone,
        currency=tenant.currency,
        locale=tenant.locale,
        owner_email=tenant.owner_email,
        status_reason=tenant.status_reason,
        created_at=tenant.created_at,
    )


async def ensure_default_plans(session: AsyncSession) -> None:
    existing = set((await session.execute(select(Plan.code))).scalars())
    for p in DEFAULT_PLANS:
        if p.code not in existing:
            session.add(Plan(**{f: getattr(p, f) for f in p.__struct_fields__}))
    await session.flush()


def check_allowed_connectors(names: list[str], known: Collection[str] | None = None) -> list[str]:
    """The plan's connector ids, refused unless each is ``*`` or provided by an installed plugin.

    ``known`` is the running process's connector ids (default: the installed plugins' ones).
    """
    if known is None:
        known = installed_connector_ids()
    unknown = sorted({n for n in names if n != "*" and n not in known})
    if unknown:
        listed = ", ".join(sorted(known)) or "-"
        raise ValidationFailed(
            f"No installed plugin provides the connector(s) {', '.join(unknown)} (installed: {listed}); "
            "see `kaquan plugins list`",
            f"没有已安装的插件提供连接器 {', '.join(unknown)}（已安装：{listed}）；请运行 `kaquan plugins list` 查看",
            code="unknown_connector",
            errors=[FieldError(field="allowed_connectors", message=f"unknown connector {n!r}", code="unknown")
                    for n in unknown],
        )
    return list(dict.fromkeys(names))


async def create_plan(
    session: AsyncSession, data: PlanCreate, *, known_connectors: Collection[str] | None = None
) -> Plan:
    """Create a plan; its ``allowed_connectors`` must name installed connectors (or ``*``)."""
    allowed = check_allowed_connectors(data.allowed_connectors, known_connectors)
    if (await session.execute(select(Plan).where(Plan.code == data.code))).scalar_one_or_none():
        raise Conflict(
            f"Plan code {data.code!r} already exists",
            f"套餐代码 {data.code!r} 已存在",
            code="plan_code_taken",
        )
    plan = Plan(**{f: getattr(data, f) for f in data.__struct_fields__})
    plan.allowed_connectors = allowed
    session.add(plan)
    await session.flush()
    return plan


async def rename_plan(session: AsyncSession, code: str, data: PlanNames) -> Plan:
    """Set the plan's display names (English ``name``, Chinese ``name_zh``; an empty one clears it)."""
    plan = await get_plan_by_code(session, code)
    plan.name, plan.name_zh = data.name.strip(), data.name_zh.strip() or None
    if not plan.name:
        raise ValidationFailed("The plan needs a name", "请填写套餐名称",
                               errors=[FieldError(field="name", message="required", code="required")])
    await session.flush()
    return plan


async def list_plans(session: AsyncSession) -> list[Plan]:
    return list((await session.execute(select(Plan).order_by(Plan.created_at))).scalars())


async def get_plan_by_code(session: AsyncSession, code: str) -> Plan:
    plan = (await session.execute(select(Plan).where(Plan.code == code))).scalar_one_or_none()
    if plan is None:
        raise ValidationFailed(f"Unknown plan: {code!r}", f"未知套餐：{code!r}", code="unknown_plan")
    return plan


SLUG_RULE_EN = ("3–40 characters: lowercase letters a–z, digits and hyphens (-), starting and ending with a "
                "letter or digit")
SLUG_RULE_ZH = "3–40 位，只能包含小写字母 a–z、数字和连字符（-），以字母或数字开头和结尾"


def check_slug(value: str) -> str:
    """The tenant slug if it follows the rule (:data:`tenants.schemas.SLUG_PATTERN`); ``422`` saying the rule
    otherwise."""
    if not re.fullmatch(SLUG_PATTERN, value):
        raise ValidationFailed(
            f"The tenant slug {value!r} is not allowed: {SLUG_RULE_EN}",
            f"商户标识 {value!r} 不符合规则：{SLUG_RULE_ZH}",
            errors=[FieldError(field="slug", message=SLUG_RULE_EN, code="invalid_slug")],
        )
    return value


async def create_tenant(kernel: Kernel, session: AsyncSession, data: TenantCreate) -> TenantCreated:
    """Onboard a tenant: registry row, data key, audit chain, owner invite (shown once)."""
    check_slug(data.slug)
    owner_email = check_email(data.owner_email, "owner_email")
    timezone = check_timezone(data.timezone)
    currency = check_currency(data.currency)
    plan = await get_plan_by_code(session, data.plan)
    if (await session.execute(select(Tenant.id).where(Tenant.slug == data.slug))).first():
        raise Conflict(
            f"Slug {data.slug!r} is already taken", f"标识 {data.slug!r} 已被占用", code="slug_taken"
        )
    tenant = Tenant(
        slug=data.slug,
        name=data.name,
        plan_id=plan.id,
        timezone=timezone,
        currency=currency,
        owner_email=owner_email,
        locale=data.locale,
    )
    session.add(tenant)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(
            f"Slug {data.slug!r} is already taken", f"标识 {data.slug!r} 已被占用", code="slug_taken"
        ) from None
    await bind_tenant(session, tenant.id)
    await kernel.keys.create_data_key(session, tenant.id)
    record(
        session,
        "tenant.created",
        "tenant",
        tenant.id,
        {"slug": tenant.slug, "plan": plan.code, "timezone": timezone, "currency": currency},
    )
    _user, url = await create_invited_user(kernel, session, owner_email, "owner", "", quota_checked=True)
    return TenantCreated(tenant=tenant_out(tenant, plan.code), owner_invite_url=url)


async def list_tenants(session: AsyncSession) -> list[TenantOut]:
    rows = await session.execute(select(Tenant, Plan.code).join(Plan).order_by(Tenant.created_at))
    return [tenant_out(t, code) for t, code in rows.all()]


async def set_status(session: AsyncSession, tenant_id: uuid.UUID, status: str, reason: str) -> TenantOut:
    """Suspend or resume; nothing is deleted. The change is audited in the tenant's own chain."""
    tenant, plan = await get_tenant(session, tenant_id)
    if tenant.status == status:
        raise Conflict(f"Tenant is already {status}", f"租户已处于该状态：{status}", code="status_unchanged")
    tenant.status, tenant.status_reason, tenant.status_changed_at = status, reason or None, utcnow()
    forget_principals()
    await bind_tenant(session, tenant.id)
    record(
        session,
        f"tenant.{'suspended' if status == 'suspended' else 'resumed'}",
        "tenant",
        tenant.id,
        {"reason": reason},
    )
    await session.flush()
    return tenant_out(tenant, plan.code)
