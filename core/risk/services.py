"""Risk control services shared by the API and the console: the rule set, blocklists, refusals, flags and
lockouts. The decisions themselves are in :mod:`core.risk.engine`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
import uuid
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.context import current_actor
from core.audit.services import record
from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.paging import keyset_page
from core.errors import Conflict, FieldError, NotFound, ValidationFailed
from core.kernel import Kernel
from core.members.services import mask_phone, normalize_phone, phone_digest
from core.risk.counters import mask, zone
from core.risk.models import RiskBlock, RiskFlag, RiskLockout, RiskPolicy, RiskRefusal, RiskRule
from core.risk.schemas import (
    BlockIn,
    BlockOut,
    BlockPage,
    FlagOut,
    FlagPage,
    LimitRule,
    LockoutOut,
    LockoutPage,
    RefusalOut,
    RefusalPage,
    RuleSet,
    RuleSetOut,
    Velocity,
)
from tenants.models import Tenant

# What a tenant gets until it saves its own rules (seed 004: 5 per account per month, 3 per IP per day).
# They limit what members take for themselves (claims). Grants are the tenant's own decision (its system,
# its staff, a welfare file that gives one person ten codes), so no default limits them; a tenant that
# wants grant limits saves them.
DEFAULT_LIMITS: tuple[LimitRule, ...] = (
    LimitRule(action="claim", dimension="member", window="month", limit=5),
    LimitRule(action="claim", dimension="ip", window="day", limit=3),
)
DEFAULT_VELOCITY = Velocity()
DEFAULT_DEVICE_MEMBER_LIMIT = 3
CONFIG_TTL_SECONDS = 5.0


@dataclass(frozen=True)
class RiskConfig:
    """A tenant's rules as the engine uses them (cached a few seconds per process)."""

    timezone: str
    limits: tuple[LimitRule, ...]
    velocity: Velocity
    device_member_limit: int
    customized: bool
    tz: ZoneInfo = field(compare=False, default=ZoneInfo("Asia/Shanghai"))


_cache: dict[uuid.UUID, tuple[float, RiskConfig]] = {}


def invalidate(tenant_id: uuid.UUID) -> None:
    _cache.pop(tenant_id, None)


async def load_config(session: AsyncSession, tenant_id: uuid.UUID, *, fresh: bool = False) -> RiskConfig:
    """The tenant's rule set, policy and timezone (the defaults until it saves its own)."""
    hit = _cache.get(tenant_id)
    if hit is not None and not fresh and hit[0] > time.monotonic():
        return hit[1]
    tz_name = (
        await session.execute(select(Tenant.timezone).where(Tenant.id == tenant_id))
    ).scalar_one_or_none()
    tz_name = tz_name or "Asia/Shanghai"
    policy = (await session.execute(select(RiskPolicy))).scalar_one_or_none()
    if policy is None:
        config = RiskConfig(
            tz_name, DEFAULT_LIMITS, DEFAULT_VELOCITY, DEFAULT_DEVICE_MEMBER_LIMIT, False, zone(tz_name)
        )
    else:
        rules = (
            await session.execute(
                select(RiskRule).order_by(RiskRule.action, RiskRule.dimension, RiskRule.per_window)
            )
        ).scalars()
        limits = tuple(
            LimitRule(
                action=r.action,
                dimension=r.dimension,
                window=r.per_window,
                limit=r.max_units,
                active=r.active,
            )
            for r in rules
        )
        velocity = Velocity(policy.failure_limit, policy.failure_window_minutes, policy.lockout_minutes)
        config = RiskConfig(tz_name, limits, velocity, policy.device_member_limit, True, zone(tz_name))
    _cache[tenant_id] = (time.monotonic() + CONFIG_TTL_SECONDS, config)
    return config


# --- rules -----------------------------------------------------------------------------------------


async def get_rules(session: AsyncSession) -> RuleSetOut:
    config = await load_config(session, require_tenant(), fresh=True)
    return RuleSetOut(
        list(config.limits), config.velocity, config.device_member_limit, config.timezone, config.customized
    )


async def put_rules(session: AsyncSession, data: RuleSet) -> RuleSetOut:
    """Replace the tenant's rule set (limits, failure velocity, device threshold); audited."""
    tenant_id = require_tenant()
    seen: dict[tuple[str, str, str], int] = {}
    errors: list[FieldError] = []
    for i, rule in enumerate(data.limits):
        key = (rule.action, rule.dimension, rule.window)
        if key in seen:
            errors.append(
                FieldError(
                    field=f"limits[{i}]", message=f"duplicate of limits[{seen[key]}]", code="duplicate"
                )
            )
        seen.setdefault(key, i)
    if errors:
        raise ValidationFailed(
            "Each action, dimension and window may have one limit only",
            "同一动作、维度和周期只能有一条限额规则",
            errors=errors,
            code="duplicate_rule",
        )
    policy = (await session.execute(select(RiskPolicy))).scalar_one_or_none()
    if policy is None:
        policy = RiskPolicy()
        session.add(policy)
    policy.failure_limit = data.velocity.failure_limit
    policy.failure_window_minutes = data.velocity.window_minutes
    policy.lockout_minutes = data.velocity.lockout_minutes
    policy.device_member_limit = data.device_member_limit
    policy.updated_at = utcnow()
    await session.execute(delete(RiskRule).where(RiskRule.tenant_id == tenant_id))
    for rule in data.limits:
        session.add(
            RiskRule(
                action=rule.action,
                dimension=rule.dimension,
                per_window=rule.window,
                max_units=rule.limit,
                active=rule.active,
            )
        )
    await session.flush()
    record(
        session,
        "risk.rules_updated",
        "risk_rules",
        tenant_id,
        {
            "limits": [[r.action, r.dimension, r.window, r.limit, r.active] for r in data.limits],
            "velocity": [
                data.velocity.failure_limit,
                data.velocity.window_minutes,
                data.velocity.lockout_minutes,
            ],
            "device_member_limit": data.device_member_limit,
        },
    )
    invalidate(tenant_id)
    return await get_rules(session)


# --- blocklist -------------------------------------------------------------------------------------


def _block_out(b: RiskBlock) -> BlockOut:
    return BlockOut(b.id, b.kind, b.display, b.note, b.created_at)


def _invalid_value(en: str, zh: str) -> ValidationFailed:
    return ValidationFailed(
        en, zh, errors=[FieldError(field="value", message=en, code="invalid")], code="invalid_block_value"
    )


async def normalize_block(session: AsyncSession, kernel: Kernel, kind: str, raw: str) -> tuple[str, str]:
    """(value matched on, display) of a blocklist entry: a phone becomes its tenant-keyed digest."""
    raw = raw.strip()
    if kind == "phone":
        phone = normalize_phone(raw)
        return await phone_digest(session, kernel, phone), mask_phone(phone)
    if kind == "ip":
        try:
            net = ipaddress.ip_network(raw, strict=False)
        except ValueError:
            raise _invalid_value(
                "Not an IP address or network (CIDR)", "不是有效的 IP 地址或网段 (CIDR)"
            ) from None
        if net.prefixlen == 0:
            raise _invalid_value("Blocking every address is not allowed", "不允许封禁全部地址")
        value = str(net.network_address) if net.num_addresses == 1 else net.compressed
        return value, value
    if kind == "device":
        if not raw or any(c.isspace() for c in raw) or not raw.isprintable():
            raise _invalid_value("Not a device id", "不是有效的设备标识")
        return raw, mask("device", raw)
    raise _invalid_value("Unknown blocklist kind", "未知的黑名单类型")


async def add_block(session: AsyncSession, kernel: Kernel, data: BlockIn) -> BlockOut:
    value, display = await normalize_block(session, kernel, data.kind, data.value)
    exists = (
        await session.execute(
            select(RiskBlock.id).where(RiskBlock.kind == data.kind, RiskBlock.value == value)
        )
    ).scalar_one_or_none()
    if exists is not None:
        raise Conflict(
            "This entry is already on the blocklist",
            "该条目已在黑名单中",
            code="already_blocked",
            extra={"id": str(exists)},
        )
    block = RiskBlock(kind=data.kind, value=value, display=display, note=(data.note or "").strip() or None)
    session.add(block)
    await session.flush()
    record(session, "risk.block_added", "risk_block", block.id, {"kind": block.kind, "display": display})
    return _block_out(block)


async def list_blocks(
    session: AsyncSession, kind: str | None = None, cursor: uuid.UUID | None = None, limit: int = 100
) -> BlockPage:
    q = select(RiskBlock)
    if kind:
        q = q.where(RiskBlock.kind == kind)
    page = await keyset_page(session, q, RiskBlock.id, cursor=cursor, limit=limit)
    return BlockPage([_block_out(b) for b in page.items], page.next_cursor)


async def remove_block(session: AsyncSession, block_id: uuid.UUID) -> None:
    block = (await session.execute(select(RiskBlock).where(RiskBlock.id == block_id))).scalar_one_or_none()
    if block is None:
        raise NotFound("Blocklist entry not found", "黑名单条目不存在", code="block_not_found")
    record(
        session, "risk.block_removed", "risk_block", block.id, {"kind": block.kind, "display": block.display}
    )
    await session.delete(block)
    await session.flush()


# --- refusals, flags, lockouts ---------------------------------------------------------------------


async def list_refusals(
    session: AsyncSession,
    cursor: uuid.UUID | None = None,
    limit: int = 100,
    action: str | None = None,
    reason: str | None = None,
) -> RefusalPage:
    """Recent refusals, newest first."""
    q = select(RiskRefusal)
    if action:
        q = q.where(RiskRefusal.action == action)
    if reason:
        q = q.where(RiskRefusal.reason == reason)
    page = await keyset_page(session, q, RiskRefusal.id, cursor=cursor, limit=limit)
    items = [
        RefusalOut(
            r.id,
            r.action,
            r.reason,
            r.dimension,
            r.subject_masked,
            r.member_id,
            r.client_id,
            r.quantity,
            r.max_units,
            r.occurred_at,
        )
        for r in page.items
    ]
    return RefusalPage(items, page.next_cursor)


async def list_flags(session: AsyncSession, cursor: uuid.UUID | None = None, limit: int = 100) -> FlagPage:
    page = await keyset_page(session, select(RiskFlag), RiskFlag.id, cursor=cursor, limit=limit)
    items = [FlagOut(f.id, f.kind, f.day, f.subject_masked, f.member_count, f.created_at) for f in page.items]
    return FlagPage(items, page.next_cursor)


def _lockout_out(lo: RiskLockout, now: dt.datetime) -> LockoutOut:
    return LockoutOut(
        lo.id,
        lo.action,
        lo.dimension,
        lo.subject_masked,
        lo.failures,
        lo.locked_until,
        lo.lifted_at,
        lo.lifted_by,
        lo.lifted_at is None and lo.locked_until > now,
        lo.created_at,
    )


async def list_lockouts(
    session: AsyncSession,
    now: dt.datetime,
    active_only: bool = False,
    cursor: uuid.UUID | None = None,
    limit: int = 100,
) -> LockoutPage:
    q = select(RiskLockout)
    if active_only:
        q = q.where(RiskLockout.lifted_at.is_(None), RiskLockout.locked_until > now)
    page = await keyset_page(session, q, RiskLockout.id, cursor=cursor, limit=limit)
    return LockoutPage([_lockout_out(lo, now) for lo in page.items], page.next_cursor)


async def lift_lockout(session: AsyncSession, lockout_id: uuid.UUID, now: dt.datetime) -> LockoutOut:
    """End an active lockout now; audited."""
    lo = (
        await session.execute(select(RiskLockout).where(RiskLockout.id == lockout_id).with_for_update())
    ).scalar_one_or_none()
    if lo is None:
        raise NotFound("Lockout not found", "锁定记录不存在", code="lockout_not_found")
    if lo.lifted_at is not None or lo.locked_until <= now:
        raise Conflict("This lockout is no longer active", "该锁定已失效", code="lockout_not_active")
    who = current_actor()
    lo.lifted_at = now
    lo.lifted_by = f"{who.type}:{who.id}"[:120]
    await session.flush()
    record(
        session,
        "risk.lockout_lifted",
        "risk_lockout",
        lo.id,
        {"dimension": lo.dimension, "subject": lo.subject_masked},
    )
    return _lockout_out(lo, now)
