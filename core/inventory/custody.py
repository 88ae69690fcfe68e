"""Custody of secrets: void codes, and reveal or export plaintext — only for owner/admin users or clients
with ``codes:reveal``, with a stated reason, within a rate limit, and always in the audit chain."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Collection
from typing import Any, Protocol

import msgspec
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.models import AuditEvent
from core.audit.services import record
from core.crypto.services import KeyService
from core.db.base import utcnow
from core.domains import extensions
from core.errors import Conflict, FieldError, Forbidden, NotFound, RateLimited, ValidationFailed
from core.inventory.models import Batch, Code, WriteOff
from core.inventory.stock import stock_fell
from core.inventory.vault import unseal
from tenants.schemas import Principal
from tenants.scopes import role_can

VOIDABLE = ("available", "reserved", "issued")
REVEALS_PER_HOUR = 30
EXPORTS_PER_DAY = 10
MAX_EXPORT = 200_000


class RevealedCode(msgspec.Struct):
    id: uuid.UUID
    number: str
    pin: str | None
    state: str
    expires_at: dt.datetime | None


def may_reveal(principal: Principal | None) -> bool:
    if principal is None:
        return False
    if principal.kind == "client":
        return "codes:reveal" in principal.scopes
    return principal.kind == "user" and role_can(principal.role or "", "codes.reveal")


def _need_reason(reason: str) -> str:
    reason = reason.strip()
    if len(reason) < 4:
        raise ValidationFailed("State a reason (at least 4 characters)", "请填写原因（至少 4 个字符）",
                               errors=[FieldError(field="reason", message="required", code="required")])
    return reason[:500]


async def _within_limit(session: AsyncSession, principal: Principal, action: str, limit: int,
                        window: dt.timedelta) -> None:
    used = await session.scalar(
        select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == action, AuditEvent.actor_type == principal.kind,
            AuditEvent.actor_id == principal.subject_id, AuditEvent.occurred_at >= utcnow() - window)
    )
    if int(used or 0) >= limit:
        raise RateLimited(f"Limit reached: {limit} per {int(window.total_seconds() // 3600)} h",
                          f"已达上限：每 {int(window.total_seconds() // 3600)} 小时 {limit} 次",
                          code="reveal_limit", headers={"Retry-After": "3600"})


def _guard(principal: Principal | None) -> Principal:
    if principal is None or not may_reveal(principal):
        raise Forbidden("Only owners and admins (or clients with codes:reveal) may see plaintext codes",
                        "只有所有者、管理员（或拥有 codes:reveal 权限的客户端）可以查看卡密明文",
                        code="reveal_forbidden")
    return principal


async def reveal(session: AsyncSession, keys: KeyService, code_id: uuid.UUID, reason: str,
                 principal: Principal | None) -> RevealedCode:
    """Decrypt one code for an authorised person; audited with the reason."""
    who = _guard(principal)
    reason = _need_reason(reason)
    code = (await session.execute(select(Code).where(Code.id == code_id))).scalar_one_or_none()
    if code is None:
        raise NotFound("Code not found", "卡密不存在", code="code_not_found")
    await _within_limit(session, who, "code.revealed", REVEALS_PER_HOUR, dt.timedelta(hours=1))
    number, pin = unseal(await keys.cipher(session), code.digest, code.secret)
    record(session, "code.revealed", "code", code.id, {"reason": reason, "last4": code.last4})
    return RevealedCode(code.id, number, pin, code.state, code.expires_at)


async def export_batch(session: AsyncSession, keys: KeyService, batch_id: uuid.UUID, reason: str,
                       principal: Principal | None, states: tuple[str, ...] = ("available",)) -> tuple[str, bytes]:
    """CSV (UTF-8 with BOM, opens in Excel) of a batch's codes in ``states``; audited with the reason."""
    who = _guard(principal)
    reason = _need_reason(reason)
    batch = (await session.execute(select(Batch).where(Batch.id == batch_id))).scalar_one_or_none()
    if batch is None:
        raise NotFound("Batch not found", "批次不存在", code="batch_not_found")
    await _within_limit(session, who, "codes.exported", EXPORTS_PER_DAY, dt.timedelta(days=1))
    cipher = await keys.cipher(session)
    rows = (await session.execute(
        select(Code.digest, Code.secret, Code.state, Code.expires_at)
        .where(Code.batch_id == batch_id, Code.state.in_(states)).order_by(Code.id).limit(MAX_EXPORT + 1)
    )).all()
    if len(rows) > MAX_EXPORT:
        raise ValidationFailed(f"More than {MAX_EXPORT} codes; filter by state", f"超过 {MAX_EXPORT} 个卡密，请按状态筛选",
                               code="export_too_large")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["card_number", "pin", "state", "expires_at"])
    for digest, secret, state, expires in rows:
        number, pin = unseal(cipher, digest, secret)
        writer.writerow([number, pin or "", state, expires.isoformat() if expires else ""])
    record(session, "codes.exported", "batch", batch.id,
           {"reason": reason, "count": len(rows), "states": list(states), "batch_ref": batch.ref})
    return f"{batch.ref}.csv", ("\ufeff" + out.getvalue()).encode("utf-8")


#: The extension point through which holders of issued codes follow a void (see :class:`CodeHolders`).
CODE_HOLDERS = "inventory.code_holders"


class CodeHolders(Protocol):
    """Something that holds units of issued codes (a grant's items) and must follow when they are voided.

    Provided by a domain above the inventory through ``provides={"inventory.code_holders": (...)}``.
    """

    async def lock(self, session: AsyncSession, code_ids: Collection[uuid.UUID]) -> Any:
        """Lock the holders of ``code_ids`` before the codes are locked; returns what :meth:`release` needs."""
        ...

    async def release(
        self, session: AsyncSession, code_ids: Collection[uuid.UUID], reason: str, locked: Any
    ) -> None:
        """After the codes are voided: the units held on ``code_ids`` become void, with ``reason``."""
        ...


async def void_codes(session: AsyncSession, code_ids: list[uuid.UUID], reason: str) -> int:
    """Void codes (supplier recall, found invalid): they never go out again; available ones are written off.

    Whoever holds units of an ``issued`` code (grants today: :mod:`core.grants.recall`) follows through the
    ``inventory.code_holders`` extension point (:class:`CodeHolders`), in the lock order every path takes:
    the holders' rows (sorted by id) first, then the codes'.
    """
    reason = _need_reason(reason)
    if not code_ids or len(code_ids) > 10_000:
        raise ValidationFailed("Give 1 to 10000 code ids", "请提供 1 到 10000 个卡密 ID",
                               errors=[FieldError(field="code_ids", message="1..10000")])
    holders = [(h, await h.lock(session, set(code_ids))) for h in extensions(CODE_HOLDERS)]
    codes = list((await session.execute(
        select(Code).where(Code.id.in_(code_ids)).with_for_update()
    )).scalars())
    if len(codes) != len(set(code_ids)):
        raise NotFound("Some codes were not found", "部分卡密不存在", code="code_not_found")
    not_voidable = [c for c in codes if c.state not in VOIDABLE]
    if not_voidable:
        raise Conflict(f"{len(not_voidable)} code(s) are already {not_voidable[0].state}",
                       f"{len(not_voidable)} 个卡密已是 {not_voidable[0].state} 状态，不能作废",
                       code="code_not_voidable")
    issued = [c.id for c in codes if c.state == "issued"]  # members may hold units of these
    now = utcnow()
    cost_by_batch: dict[uuid.UUID, tuple[uuid.UUID, int]] = {}
    for c in codes:
        if c.state in ("available", "reserved"):
            product, n = cost_by_batch.get(c.batch_id, (c.product_id, 0))
            cost_by_batch[c.batch_id] = (product, n + 1)
    await session.execute(
        update(Code).where(Code.id.in_([c.id for c in codes]))
        .values(state="voided", void_reason=reason, reservation_id=None, reserved_until=None, state_changed_at=now),
        execution_options={"synchronize_session": False},
    )
    batches = {b.id: b for b in (await session.execute(
        select(Batch).where(Batch.id.in_(list(cost_by_batch) or [uuid.UUID(int=0)])))).scalars()}
    for batch_id, (product_id, n) in cost_by_batch.items():
        b = batches[batch_id]
        session.add(WriteOff(product_id=product_id, batch_id=batch_id, reason="voided", quantity=n,
                             cost=n * b.unit_cost, currency=b.currency))
    record(session, "codes.voided", "codes", codes[0].id if len(codes) == 1 else f"{len(codes)} codes",
           {"reason": reason, "codes": [str(c.id) for c in codes]})
    await stock_fell(session, {product for product, _ in cost_by_batch.values()})
    if issued:
        for holder, locked in holders:
            await holder.release(session, issued, reason, locked)
    return len(codes)
