"""Platform operators: created by CLI, log in to the operator console and API (separate realm)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.base import utcnow
from core.errors import Conflict, Locked, NotFound, Unauthorized
from core.kernel import Kernel
from core.validation import check_email, check_timezone
from tenants.models import Operator, OperatorToken
from tenants.schemas import Principal
from tenants.security import digest, hash_password, random_secret, verify_password
from tenants.users import _check_password


async def create_operator(session: AsyncSession, email: str, password: str, name: str = "") -> Operator:
    email = check_email(email)
    _check_password(password)
    if (await session.execute(select(Operator.id).where(Operator.email == email))).first():
        raise Conflict(f"Operator {email} already exists", f"运营人员 {email} 已存在", code="operator_exists")
    op = Operator(email=email, name=name, password_hash=hash_password(password))
    session.add(op)
    await session.flush()
    return op


async def get_operator(session: AsyncSession, operator_id: uuid.UUID) -> Operator:
    """The operator with this id (``404 operator_not_found`` when gone)."""
    op = (await session.execute(select(Operator).where(Operator.id == operator_id))).scalar_one_or_none()
    if op is None:
        raise NotFound("Operator not found", "运营人员不存在", code="operator_not_found")
    return op


async def update_operator_profile(session: AsyncSession, operator_id: uuid.UUID, name: str, timezone: str) -> Operator:
    """Set the operator's name and time zone (an IANA name; the operator console shows times in it)."""
    op = await get_operator(session, operator_id)
    op.timezone = check_timezone(timezone.strip())
    op.name = name.strip()[:120]
    await session.flush()
    return op


async def authenticate_operator(kernel: Kernel, email: str, password: str) -> Operator:
    """Check an operator login in its own transaction; lock after repeated failures."""
    invalid = Unauthorized("Wrong e-mail or password", "邮箱或密码错误", code="invalid_login")
    error: Exception | None = None
    async with kernel.db.transaction() as session:
        op = (
            await session.execute(select(Operator).where(Operator.email == email.strip().lower()))
        ).scalar_one_or_none()
        if op is None or not op.is_active:
            raise invalid
        now = utcnow()
        if op.locked_until and op.locked_until > now:
            raise Locked(
                "Too many failed logins; try again later",
                "登录失败次数过多，账户已暂时锁定，请稍后再试",
                headers={"Retry-After": str(int((op.locked_until - now).total_seconds()) + 1)},
            )
        if verify_password(op.password_hash, password):
            op.failed_logins, op.locked_until, op.last_login_at = 0, None, now
        else:
            op.failed_logins += 1
            if op.failed_logins >= kernel.settings.login_max_failures:
                op.locked_until = now + dt.timedelta(seconds=kernel.settings.login_lockout_seconds)
                op.failed_logins = 0
            error = invalid
    if error is not None:
        raise error
    return op


async def issue_operator_token(kernel: Kernel, session: AsyncSession, op: Operator) -> tuple[str, int]:
    token = random_secret("kqop")
    ttl = kernel.settings.token_ttl_seconds
    session.add(
        OperatorToken(
            operator_id=op.id, token_digest=digest(token), expires_at=utcnow() + dt.timedelta(seconds=ttl)
        )
    )
    await session.flush()
    return token, ttl


async def authenticate_operator_token(session: AsyncSession, token: str) -> Principal:
    row = (
        await session.execute(
            select(OperatorToken, Operator.is_active)
            .join(Operator)
            .where(OperatorToken.token_digest == digest(token))
        )
    ).first()
    if row is None or not row[1]:
        raise Unauthorized("The operator token is invalid", "运营令牌无效", code="invalid_token")
    tok = row[0]
    if tok.revoked_at is not None:
        raise Unauthorized("The operator token was revoked", "运营令牌已被吊销", code="token_revoked")
    if tok.expires_at <= utcnow():
        raise Unauthorized("The operator token has expired", "运营令牌已过期", code="token_expired")
    return Principal(kind="operator", subject_id=str(tok.operator_id))
