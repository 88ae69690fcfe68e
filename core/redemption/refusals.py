"""The refusals of a redemption, as problems with stable codes and zh-CN/en details."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.context import require_tenant
from core.errors import Conflict, DomainError, FieldError, NotFound, ValidationFailed
from core.redemption.models import Redemption
from core.redemption.schemas import RedeemIn
from tenants.models import Tenant


def not_found() -> NotFound:
    """404 ``code_not_found``: no code matches (a wrong code counts as a failed attempt)."""
    return NotFound(
        "No such code; check the number and try again", "券码不存在，请核对后重试", code="code_not_found"
    )


def pin_mismatch() -> DomainError:
    """422 ``pin_mismatch`` (counts as a failed attempt)."""
    return DomainError(
        "The PIN does not match this code",
        "卡密（PIN）与券码不符",
        code="pin_mismatch",
        status=422,
        errors=[FieldError(field="pin", message="does not match", code="pin_mismatch")],
    )


def pin_required() -> ValidationFailed:
    """422 ``pin_required``: the code has a PIN and none was given."""
    return ValidationFailed(
        "This code needs its PIN",
        "该券码需要输入卡密（PIN）",
        code="pin_required",
        errors=[FieldError(field="pin", message="required", code="required")],
    )


def not_issued() -> Conflict:
    """409 ``code_not_issued``: the code is still in stock."""
    return Conflict(
        "This code has not been handed out, so it cannot be redeemed",
        "该券码尚未发放，不能核销",
        code="code_not_issued",
    )


def voided() -> Conflict:
    """409 ``code_voided``."""
    return Conflict("This code has been voided", "该券码已作废", code="code_voided")


def expired(expires_at: dt.datetime | None) -> Conflict:
    """409 ``code_expired`` (``expires_at`` is None when the member's unit, not the code, expired)."""
    return Conflict(
        "This code has expired",
        "该券码已过期",
        code="code_expired",
        extra={"expires_at": expires_at.isoformat() if expires_at else None},
    )


def uses_exhausted(uses: int, limit: int) -> Conflict:
    """409 ``uses_exhausted``: every use handed out of a reusable code is redeemed."""
    return Conflict(
        f"Every use of this code has been redeemed ({uses} of {limit})",
        f"该券码的可用次数已用完（已用 {uses} / {limit} 次）",
        code="uses_exhausted",
        extra={"uses": uses, "uses_limit": limit},
    )


def insufficient(balance: int, amount: int | None, currency: str) -> Conflict:
    """409 ``insufficient_balance`` of a stored-value card."""
    return Conflict(
        f"Insufficient balance: {balance} fen left, {amount} fen asked",
        f"余额不足：剩余 {balance} 分，需扣 {amount} 分",
        code="insufficient_balance",
        extra={"balance": balance, "amount": amount, "currency": currency},
    )


async def already_redeemed(session: AsyncSession, code_id: uuid.UUID) -> Conflict:
    """409 ``already_redeemed`` saying when and where (store / terminal) the code was redeemed."""
    last = (
        await session.execute(
            select(Redemption)
            .where(Redemption.code_id == code_id, Redemption.status == "redeemed")
            .order_by(Redemption.id.desc())
            .limit(1)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if last is None:
        return Conflict("This code has already been redeemed", "该券码已核销", code="already_redeemed")
    tz_name = await session.scalar(select(Tenant.timezone).where(Tenant.id == require_tenant())) or "UTC"
    when = last.created_at.astimezone(ZoneInfo(tz_name)).strftime("%Y-%m-%d %H:%M:%S")
    by = f"{last.store or '—'} / {last.terminal or '—'}"
    return Conflict(
        f"Already redeemed at {when} ({tz_name}) by {by}",
        f"该券码已于 {when}（{tz_name}）在 {by} 核销",
        code="already_redeemed",
        extra={
            "redeemed_at": last.created_at.isoformat(),
            "store": last.store,
            "terminal": last.terminal,
            "redemption_id": str(last.id),
        },
    )


def holder_missing(data: RedeemIn) -> NotFound:
    """404 ``holder_not_found``: the member or grant item named holds no unredeemed unit of the code."""
    if data.grant_item_id is not None:
        field, en, zh = (
            "grant_item_id",
            "No unredeemed grant item with this id holds this code",
            "该发放明细不存在、已核销或不属于此券码",
        )
    else:
        field, en, zh = (
            "member_id",
            "This member holds no unredeemed unit of this code",
            "该会员没有持有此券码的未核销份额",
        )
    return NotFound(
        en,
        zh,
        code="holder_not_found",
        errors=[FieldError(field=field, message="holds no unredeemed unit of this code", code="not_found")],
    )
