"""Console users of a tenant: invite, accept, log in (with lockout), list, change role, disable."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.context import Actor
from core.audit.services import record
from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.session import bind_tenant
from core.errors import Conflict, FieldError, Forbidden, Locked, NotFound, Unauthorized, ValidationFailed
from core.jobs.outbox import enqueue
from core.kernel import Kernel
from core.validation import check_email
from tenants.models import Tenant, User
from tenants.registry import check_quota, get_tenant_by_slug
from tenants.schemas import UserOut
from tenants.security import (
    MIN_PASSWORD_LENGTH,
    digest,
    hash_password,
    tenant_of_credential,
    verify_password,
)
from tenants.tokens import invite_url, new_invite_token

NOTIFY_ACTOR = "send_notification"


def user_out(u: User) -> UserOut:
    return UserOut(u.id, u.email, u.name, u.role, u.status, u.created_at, u.last_login_at)


async def create_invited_user(
    kernel: Kernel, session: AsyncSession, email: str, role: str, name: str, *, quota_checked: bool = False
) -> tuple[User, str]:
    """Create an invited user and queue the invite e-mail; returns the user and the one-time link."""
    tenant_id = require_tenant()
    email = check_email(email)
    if (await session.execute(select(User.id).where(User.email == email))).first():
        raise Conflict(
            f"A user with e-mail {email} already exists", f"邮箱 {email} 的用户已存在", code="user_exists"
        )
    if not quota_checked:
        await check_quota(session, tenant_id, "users")
    token, token_digest, expires = new_invite_token(tenant_id)
    user = User(
        email=email,
        name=name,
        role=role,
        status="invited",
        invite_digest=token_digest,
        invite_expires_at=expires,
    )
    session.add(user)
    await session.flush()
    url = invite_url(kernel.settings.base_url, token)
    cipher = await kernel.keys.cipher(session)
    # The link is a credential: the job payload carries it sealed under the tenant's data key.
    sealed = cipher.encrypt(url.encode(), aad=b"notification").hex()
    enqueue(
        session,
        NOTIFY_ACTOR,
        {
            "channel": "email",
            "to": email,
            "template": "invite",
            "params": {"role": role},
            "sealed_params": {"link": sealed},
        },
        business_key=f"invite:{user.id}:{token_digest[:12]}",
    )
    record(session, "user.invited", "user", user.id, {"email": email, "role": role})
    return user, url


async def list_users(session: AsyncSession) -> list[User]:
    return list((await session.execute(select(User).order_by(User.created_at))).scalars())


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = (await session.execute(select(User).where(User.id == user_id))).scalar_one_or_none()
    if user is None:
        raise NotFound("User not found", "用户不存在", code="user_not_found")
    return user


async def change_role(session: AsyncSession, user_id: uuid.UUID, role: str) -> User:
    user = await get_user(session, user_id)
    if user.role == "owner" and role != "owner":
        await _keep_one_owner(session, user)
    old, user.role = user.role, role
    record(session, "user.role_changed", "user", user.id, {"from": old, "to": role})
    await session.flush()
    return user


async def disable_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await get_user(session, user_id)
    if user.role == "owner":
        await _keep_one_owner(session, user)
    user.status = "disabled"
    record(session, "user.disabled", "user", user.id, {})
    await session.flush()
    return user


async def _keep_one_owner(session: AsyncSession, leaving: User) -> None:
    owners = (
        await session.execute(
            select(User.id).where(User.role == "owner", User.status != "disabled", User.id != leaving.id)
        )
    ).all()
    if not owners:
        raise Conflict(
            "A tenant must keep at least one owner", "租户至少需要保留一名所有者", code="last_owner"
        )


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            f"The password must be at least {MIN_PASSWORD_LENGTH} characters",
            f"密码至少需要 {MIN_PASSWORD_LENGTH} 个字符",
            errors=[FieldError(field="password", message="too short", code="password_too_short")],
        )


async def find_invite(session: AsyncSession, token: str) -> User:
    """The invited user of a token (binds the tenant context), or a clear error."""
    tenant_id = tenant_of_credential(token, "kqi")
    bad = NotFound(
        "This invite link is invalid or was already used", "邀请链接无效或已被使用", code="invite_invalid"
    )
    if tenant_id is None:
        raise bad
    await bind_tenant(session, tenant_id)
    user = (
        await session.execute(select(User).where(User.invite_digest == digest(token)))
    ).scalar_one_or_none()
    if user is None or user.status != "invited":
        raise bad
    if user.invite_expires_at is None or user.invite_expires_at < utcnow():
        raise NotFound(
            "This invite link has expired; ask for a new one",
            "邀请链接已过期，请重新邀请",
            code="invite_expired",
        )
    return user


async def accept_invite(session: AsyncSession, token: str, password: str, name: str = "") -> User:
    user = await find_invite(session, token)
    _check_password(password)
    user.password_hash = hash_password(password)
    user.status = "active"
    user.invite_digest = None
    user.invite_expires_at = None
    if name:
        user.name = name
    record(session, "user.activated", "user", user.id, {}, actor=Actor("user", str(user.id)))
    await session.flush()
    return user


async def authenticate_user(
    kernel: Kernel, tenant_slug: str, email: str, password: str
) -> tuple[Tenant, User]:
    """Check a console login in its own transaction, so failed attempts are counted even when refused.

    After ``login_max_failures`` wrong passwords the account is locked for ``login_lockout_seconds``.
    """
    invalid = Unauthorized("Wrong tenant, e-mail or password", "租户、邮箱或密码错误", code="invalid_login")
    error: Exception | None = None
    async with kernel.db.transaction() as session:
        tenant = await get_tenant_by_slug(session, tenant_slug.strip().lower())
        if tenant is None:
            raise invalid
        await bind_tenant(session, tenant.id)
        user = (
            await session.execute(select(User).where(User.email == email.strip().lower()))
        ).scalar_one_or_none()
        if user is None or user.status != "active":
            raise invalid
        now = utcnow()
        if user.locked_until and user.locked_until > now:
            raise Locked(
                "Too many failed logins; try again later",
                "登录失败次数过多，账户已暂时锁定，请稍后再试",
                headers={"Retry-After": str(int((user.locked_until - now).total_seconds()) + 1)},
            )
        actor = Actor("user", str(user.id))
        if not verify_password(user.password_hash, password):
            user.failed_logins += 1
            if user.failed_logins >= kernel.settings.login_max_failures:
                user.locked_until = now + dt.timedelta(seconds=kernel.settings.login_lockout_seconds)
                user.failed_logins = 0
                record(session, "user.locked", "user", user.id, {}, actor=actor)
            error = invalid
        elif not tenant.is_active:
            error = Forbidden(
                "This tenant is suspended; contact the platform operator",
                "该租户已被暂停，请联系平台运营方",
                code="tenant_suspended",
            )
        else:
            user.failed_logins = 0
            user.locked_until = None
            user.last_login_at = now
            record(session, "user.logged_in", "user", user.id, {}, actor=actor)
    if error is not None:
        raise error
    return tenant, user
