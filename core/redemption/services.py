"""Redemption (核销): validate, redeem exactly once, reusable use counts, stored-value balances, rollback.

Exactly once is a property of the database, not of the caller: every redemption is one conditional
UPDATE that only one transaction can win —

* a single-use code: ``codes.state`` ``issued → redeemed`` ``WHERE state = 'issued'``;
* a reusable code: ``code_accounts.uses + 1`` ``WHERE uses < <uses handed out>``;
* a stored-value card: ``code_accounts.balance - amount`` ``WHERE balance >= amount`` (and a CHECK
  constraint ``balance >= 0`` under it).

On PostgreSQL a concurrent redeemer blocks on the row lock, re-evaluates the WHERE after the winner commits
and matches nothing, so it is told ``already_redeemed`` with when and where the winner redeemed.

A code is looked up by its HMAC digest (tenant key), trying the text as given first (what
:func:`core.inventory.vault.digest_of` stores), then forms with the spaces, dashes and case a person or a
scanner may have changed. Every attempt passes the risk gate (blocklists, lockouts, limits); wrong codes and
wrong PINs feed its failed-attempt velocity (:func:`core.risk.gate.record_failure`), which the engine writes
in a transaction of its own, so the request's rollback cannot undo the count.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.catalog.models import Product
from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.ids import new_id
from core.errors import Conflict, DomainError, FieldError, NotFound, ValidationFailed
from core.events.services import emit
from core.grants.models import GrantItem
from core.inventory import codegen
from core.inventory.models import Code
from core.inventory.vault import clean, digest_of, masked, unseal
from core.redemption.models import (
    DEFAULT_ROLLBACK_WINDOW_MINUTES,
    CodeAccount,
    LedgerEntry,
    Redemption,
    RedemptionSettings,
)
from core.redemption.schemas import (
    LedgerEntryOut,
    LedgerOut,
    RedeemIn,
    RedemptionOut,
    RedemptionPage,
    ValidationOut,
)
from core.risk.gate import RiskSubject, guard, record_failure
from tenants.models import Tenant

REDEEMABLE_KINDS = ("code", "reusable_code", "stored_value")
MAX_CANDIDATES = 8
_SPACES = re.compile(r"[\s\u3000]+")


# --- who is redeeming ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who redeems: a console user or an API client, and where from (for the risk rules)."""

    user_id: uuid.UUID | None = None
    client_id: uuid.UUID | None = None
    ip: str | None = None


def _subject(caller: Caller, terminal: str) -> RiskSubject:
    return RiskSubject(client_id=caller.client_id, ip=caller.ip, device_id=terminal or None)


# --- errors ----------------------------------------------------------------------------------------------


def _not_found() -> NotFound:
    return NotFound(
        "No such code; check the number and try again", "券码不存在，请核对后重试", code="code_not_found"
    )


def _pin_mismatch() -> DomainError:
    return DomainError(
        "The PIN does not match this code",
        "卡密（PIN）与券码不符",
        code="pin_mismatch",
        status=422,
        errors=[FieldError(field="pin", message="does not match", code="pin_mismatch")],
    )


def _pin_required() -> ValidationFailed:
    return ValidationFailed(
        "This code needs its PIN",
        "该券码需要输入卡密（PIN）",
        code="pin_required",
        errors=[FieldError(field="pin", message="required", code="required")],
    )


def _not_issued() -> Conflict:
    return Conflict(
        "This code has not been handed out, so it cannot be redeemed",
        "该券码尚未发放，不能核销",
        code="code_not_issued",
    )


def _voided() -> Conflict:
    return Conflict("This code has been voided", "该券码已作废", code="code_voided")


def _expired(expires_at: dt.datetime | None) -> Conflict:
    return Conflict(
        "This code has expired",
        "该券码已过期",
        code="code_expired",
        extra={"expires_at": expires_at.isoformat() if expires_at else None},
    )


def _uses_exhausted(uses: int, limit: int) -> Conflict:
    return Conflict(
        f"Every use of this code has been redeemed ({uses} of {limit})",
        f"该券码的可用次数已用完（已用 {uses} / {limit} 次）",
        code="uses_exhausted",
        extra={"uses": uses, "uses_limit": limit},
    )


def _insufficient(balance: int, amount: int | None, currency: str) -> Conflict:
    return Conflict(
        f"Insufficient balance: {balance} fen left, {amount} fen asked",
        f"余额不足：剩余 {balance} 分，需扣 {amount} 分",
        code="insufficient_balance",
        extra={"balance": balance, "amount": amount, "currency": currency},
    )


async def _already_redeemed(session: AsyncSession, code_id: uuid.UUID) -> Conflict:
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


async def _failed(session: AsyncSession, settings: Any, subject: RiskSubject, exc: DomainError) -> NoReturn:
    """Count a failed attempt (wrong code or PIN) towards the lockout, then refuse.

    The risk engine writes failures in a transaction of its own (on SQLite behind the caller's write lock:
    right after it), so the count survives the rollback that the refusal causes.
    """
    await record_failure(session, settings, "redeem", subject)
    raise exc


# --- looking a code up ----------------------------------------------------------------------------------


def code_candidates(raw: str) -> list[str]:
    """The forms of a typed or scanned code to look up, most literal first.

    The vault digests the number as stored (surrounding whitespace removed, case and inner characters
    kept), so the text as given is tried first; then without inner spaces, with spaces as dashes,
    upper-cased, and in the platform's generated layout (Crockford-normalised, groups of four, then the
    check symbol).
    """
    text = clean(raw.replace("\u3000", " "))
    joined, dashed = _SPACES.sub("", text), _SPACES.sub("-", text)
    out = [text, joined, dashed, joined.upper(), dashed.upper()]
    flat = codegen.normalize(joined)
    if len(flat) > 1:
        body = flat[:-1]
        out += [flat, "-".join([body[i : i + 4] for i in range(0, len(body), 4)] + [flat[-1]])]
    return list(dict.fromkeys(c for c in out if c))[:MAX_CANDIDATES]


async def _find_code(session: AsyncSession, kernel: Any, raw: str) -> tuple[Code | None, Product | None, Any]:
    """The code (and its product) whose digest matches the most literal candidate form of ``raw``."""
    cipher = await kernel.keys.cipher(session)
    digests = [digest_of(cipher, c) for c in code_candidates(raw)]
    rows = (
        await session.execute(
            select(Code, Product)
            .join(Product, Product.id == Code.product_id)
            .where(Code.digest.in_(digests))
            .execution_options(populate_existing=True)
        )
    ).all()
    by_digest = {code.digest: (code, product) for code, product in rows}
    for d in digests:
        if d in by_digest:
            return *by_digest[d], cipher
    return None, None, cipher


def _pin_matches(cipher: Any, code: Code, given: str) -> bool:
    _, pin = unseal(cipher, code.digest, code.secret)
    return hmac.compare_digest(given.strip().encode("utf-8"), (pin or "").encode("utf-8"))


async def _product(session: AsyncSession, product_id: uuid.UUID) -> Product:
    return (await session.execute(select(Product).where(Product.id == product_id))).scalar_one()


async def _account(session: AsyncSession, code_id: uuid.UUID) -> CodeAccount | None:
    return (
        await session.execute(
            select(CodeAccount)
            .where(CodeAccount.code_id == code_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


def _handed_out(code: Code, product: Product) -> int:
    """Uses of a reusable code handed out so far (allocation decrements ``uses_left`` per unit)."""
    limit = product.max_uses or 0
    if code.uses_left is None:
        return limit if code.state in ("issued", "redeemed") else 0
    return max(limit - code.uses_left, 0)


@dataclass
class _Checked:
    """A code that passed the checks, with what validate reports."""

    code: Code
    product: Product
    uses: int | None = None
    uses_remaining: int | None = None
    balance: int | None = None


async def _check(
    session: AsyncSession, kernel: Any, data: RedeemIn, subject: RiskSubject, now: dt.datetime
) -> _Checked:
    """Find the code, check its PIN and whether it may be redeemed now (reads only)."""
    code, product, cipher = await _find_code(session, kernel, data.code)
    if code is None or product is None:
        await _failed(session, kernel.settings, subject, _not_found())
    if code.has_pin:
        if not data.pin or not data.pin.strip():
            raise _pin_required()
        if not _pin_matches(cipher, code, data.pin):
            await _failed(session, kernel.settings, subject, _pin_mismatch())
    if product.kind not in REDEEMABLE_KINDS:
        raise _not_found()
    if product.kind == "stored_value":
        if data.amount is None:
            raise ValidationFailed(
                "A stored-value card needs the amount to spend (fen)",
                "储值卡核销需要填写扣减金额（分）",
                code="amount_required",
                errors=[FieldError(field="amount", message="required", code="required")],
            )
    elif data.amount is not None:
        raise ValidationFailed(
            "Only stored-value cards take an amount",
            "只有储值卡需要填写金额",
            code="amount_not_applicable",
            errors=[FieldError(field="amount", message="not applicable", code="not_applicable")],
        )
    if code.state == "voided":
        raise _voided()
    if code.state == "expired" or (code.expires_at is not None and code.expires_at <= now):
        raise _expired(code.expires_at)
    checked = _Checked(code, product)
    if product.kind == "code":
        if code.state == "redeemed":
            raise await _already_redeemed(session, code.id)
        if code.state != "issued":
            raise _not_issued()
    elif product.kind == "reusable_code":
        handed = _handed_out(code, product)
        if handed <= 0:
            raise _not_issued()
        account = await _account(session, code.id)
        uses = account.uses if account else 0
        if uses >= handed or code.state == "redeemed":
            raise _uses_exhausted(uses, handed)
        checked.uses, checked.uses_remaining = uses, handed - uses
    else:
        account = await _account(session, code.id)
        balance = account.balance if account and account.balance is not None else product.face_value
        if code.state == "redeemed":
            raise _insufficient(0, data.amount, product.currency)
        if code.state != "issued":
            raise _not_issued()
        if data.amount is not None and balance < data.amount:
            raise _insufficient(balance, data.amount, product.currency)
        checked.balance = balance
    return checked


async def _holder_item(session: AsyncSession, code_id: uuid.UUID) -> GrantItem | None:
    return (
        await session.execute(
            select(GrantItem)
            .where(GrantItem.code_id == code_id, GrantItem.status == "held")
            .order_by(GrantItem.id)
            .limit(1)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


class _ValidateOnly(Exception):
    """Raised out of the risk guard after a successful validation so the counted unit is given back."""

    def __init__(self, result: ValidationOut) -> None:
        super().__init__("validated")
        self.result = result


async def validate(session: AsyncSession, kernel: Any, data: RedeemIn, caller: Caller) -> ValidationOut:
    """Whether the code may be redeemed now, with its balance or remaining uses; changes nothing.

    It passes the risk gate like a redemption (blocklists and lockouts refuse it; wrong codes and PINs
    count as failures) but gives the counted unit back, so validating does not use up redemption limits.
    """
    subject = _subject(caller, data.terminal)
    try:
        async with guard(session, kernel.settings, "redeem", subject):
            c = await _check(session, kernel, data, subject, utcnow())
            item = await _holder_item(session, c.code.id)
            raise _ValidateOnly(
                ValidationOut(
                    True,
                    c.code.id,
                    masked(c.code.last4),
                    c.product.id,
                    c.product.name_zh,
                    c.product.kind,
                    c.code.expires_at,
                    c.product.currency,
                    c.uses,
                    c.uses_remaining,
                    c.balance,
                    item.member_id if item else None,
                )
            )
    except _ValidateOnly as ok:
        return ok.result


# --- redeeming ----------------------------------------------------------------------------------------------


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else ""


async def _open_account(session: AsyncSession, code: Code, product: Product, now: dt.datetime) -> bool:
    """Create the code's account if it has none (balance = face value for stored value); True if created."""
    values: dict[str, Any] = {
        "tenant_id": require_tenant(),
        "id": new_id(),
        "code_id": code.id,
        "uses": 0,
        "balance": product.face_value if product.kind == "stored_value" else None,
        "initial_balance": product.face_value if product.kind == "stored_value" else None,
        "currency": product.currency,
        "updated_at": now,
        "created_at": now,
    }
    insert = pg_insert if _dialect(session) == "postgresql" else sqlite_insert
    result = await session.execute(
        insert(CodeAccount).values(**values).on_conflict_do_nothing(index_elements=["tenant_id", "code_id"])
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def _set_code_state(
    session: AsyncSession,
    code_id: uuid.UUID,
    old: str,
    new: str,
    now: dt.datetime,
    *,
    fresh_only: bool = False,
) -> bool:
    stmt = update(Code).where(Code.id == code_id, Code.state == old)
    if fresh_only:
        stmt = stmt.where(or_(Code.expires_at.is_(None), Code.expires_at > now))
    result = await session.execute(
        stmt.values(state=new, state_changed_at=now).returning(Code.id),
        execution_options={"synchronize_session": False},
    )
    return result.first() is not None


async def _move_item(session: AsyncSession, item_id: uuid.UUID | None, old: str, new: str) -> None:
    if item_id is not None:
        await session.execute(
            update(GrantItem).where(GrantItem.id == item_id, GrantItem.status == old).values(status=new),
            execution_options={"synchronize_session": False},
        )


async def redeem(session: AsyncSession, kernel: Any, data: RedeemIn, caller: Caller) -> Redemption:
    """Redeem a code exactly once (one use of a reusable code, ``amount`` of a stored-value card)."""
    subject = _subject(caller, data.terminal)
    async with guard(session, kernel.settings, "redeem", subject):
        now = utcnow()
        c = await _check(session, kernel, data, subject, now)
        code, product = c.code, c.product
        item = await _holder_item(session, code.id)
        balance_after: int | None = None
        use_number: int | None = None
        opened = False
        if product.kind == "code":
            if not await _set_code_state(session, code.id, "issued", "redeemed", now, fresh_only=True):
                state = await session.scalar(select(Code.state).where(Code.id == code.id))
                if state == "redeemed":
                    raise await _already_redeemed(session, code.id)
                raise _voided() if state == "voided" else _expired(code.expires_at)
            consumed = True
        elif product.kind == "reusable_code":
            handed = _handed_out(code, product)
            await _open_account(session, code, product, now)
            row = (
                await session.execute(
                    update(CodeAccount)
                    .where(CodeAccount.code_id == code.id, CodeAccount.uses < handed)
                    .values(uses=CodeAccount.uses + 1, updated_at=now)
                    .returning(CodeAccount.uses),
                    execution_options={"synchronize_session": False},
                )
            ).first()
            if row is None:
                raise _uses_exhausted(handed, handed)
            use_number = int(row.uses)
            if product.max_uses and use_number >= product.max_uses:
                await _set_code_state(session, code.id, "issued", "redeemed", now)
            item = await _holder_item(session, code.id)  # re-read: the use counter's row lock serialises us
            consumed = True
        else:
            amount = int(data.amount or 0)
            opened = await _open_account(session, code, product, now)
            row = (
                await session.execute(
                    update(CodeAccount)
                    .where(CodeAccount.code_id == code.id, CodeAccount.balance >= amount)
                    .values(balance=CodeAccount.balance - amount, uses=CodeAccount.uses + 1, updated_at=now)
                    .returning(CodeAccount.balance, CodeAccount.uses),
                    execution_options={"synchronize_session": False},
                )
            ).first()
            if row is None:
                left = await session.scalar(select(CodeAccount.balance).where(CodeAccount.code_id == code.id))
                raise _insufficient(int(left or 0), amount, product.currency)
            balance_after, use_number = int(row.balance), int(row.uses)
            consumed = balance_after == 0
            if consumed:
                await _set_code_state(session, code.id, "issued", "redeemed", now)
        red = Redemption(
            id=new_id(),
            code_id=code.id,
            product_id=product.id,
            kind=product.kind,
            code_last4=code.last4,
            grant_item_id=item.id if item else None,
            member_id=item.member_id if item else None,
            store=data.store.strip(),
            terminal=data.terminal.strip(),
            reference=(data.reference or "").strip() or None,
            amount=data.amount,
            currency=product.currency,
            balance_after=balance_after,
            use_number=use_number,
            user_id=caller.user_id,
            client_id=caller.client_id,
            status="redeemed",
            created_at=now,
        )
        session.add(red)
        await session.flush()  # before the ledger entries that refer to it (no ORM relationship orders them)
        if consumed and item is not None:
            await _move_item(session, item.id, "held", "redeemed")
        if product.kind == "stored_value":
            if opened:
                session.add(
                    LedgerEntry(
                        code_id=code.id,
                        kind="opening",
                        delta=product.face_value,
                        balance_after=product.face_value,
                        created_at=now,
                    )
                )
            session.add(
                LedgerEntry(
                    code_id=code.id,
                    redemption_id=red.id,
                    kind="redeem",
                    delta=-int(data.amount or 0),
                    balance_after=int(balance_after or 0),
                    created_at=now,
                )
            )
        facts = _facts(red)
        record(session, "code.redeemed", "code", code.id, facts)
        emit(session, "code.redeemed", code.id, facts)
        await session.flush()
    return red


def _facts(red: Redemption) -> dict[str, Any]:
    """What the audit record and the event say about a redemption (never the code itself)."""
    return {
        "redemption_id": str(red.id),
        "code_id": str(red.code_id),
        "last4": red.code_last4,
        "product_id": str(red.product_id),
        "kind": red.kind,
        "store": red.store,
        "terminal": red.terminal,
        "reference": red.reference,
        "amount": red.amount,
        "currency": red.currency,
        "balance_after": red.balance_after,
        "use_number": red.use_number,
        "member_id": str(red.member_id) if red.member_id else None,
        "grant_item_id": str(red.grant_item_id) if red.grant_item_id else None,
    }


# --- rollback ----------------------------------------------------------------------------------------------


async def get_settings(session: AsyncSession) -> RedemptionSettings:
    """The tenant's redemption settings (defaults when never changed; not stored until changed)."""
    row = (await session.execute(select(RedemptionSettings))).scalar_one_or_none()
    return row or RedemptionSettings(rollback_window_minutes=DEFAULT_ROLLBACK_WINDOW_MINUTES)


async def update_settings(session: AsyncSession, rollback_window_minutes: int) -> RedemptionSettings:
    row = (await session.execute(select(RedemptionSettings).with_for_update())).scalar_one_or_none()
    before = row.rollback_window_minutes if row else DEFAULT_ROLLBACK_WINDOW_MINUTES
    if row is None:
        row = RedemptionSettings(rollback_window_minutes=rollback_window_minutes)
        session.add(row)
    row.rollback_window_minutes = rollback_window_minutes
    row.updated_at = utcnow()
    await session.flush()
    record(
        session,
        "redemption.settings_changed",
        "redemption_settings",
        row.id,
        {"rollback_window_minutes": {"from": before, "to": rollback_window_minutes}},
    )
    return row


async def find_redemption(session: AsyncSession, redemption_id: uuid.UUID) -> Redemption:
    red = (
        await session.execute(
            select(Redemption).where(Redemption.id == redemption_id).execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if red is None:
        raise NotFound("Redemption not found", "核销记录不存在", code="redemption_not_found")
    return red


async def rollback(session: AsyncSession, redemption_id: uuid.UUID, reason: str) -> Redemption:
    """Undo a redemption within the tenant's window: the code, use or balance comes back."""
    reason = reason.strip()
    if not reason:
        raise ValidationFailed(
            "Give a reason for the rollback",
            "请填写撤销原因",
            code="reason_required",
            errors=[FieldError(field="reason", message="required", code="required")],
        )
    red = await find_redemption(session, redemption_id)
    if red.status == "rolled_back":
        raise Conflict(
            "This redemption has already been rolled back", "该核销已撤销", code="already_rolled_back"
        )
    window = (await get_settings(session)).rollback_window_minutes
    now = utcnow()
    deadline = red.created_at + dt.timedelta(minutes=window)
    if now > deadline:
        raise Conflict(
            f"The rollback window ({window} minutes) has passed",
            f"已超过可撤销时限（{window} 分钟）",
            code="rollback_window_passed",
            extra={"rollback_until": deadline.isoformat(), "rollback_window_minutes": window},
        )
    won = (
        await session.execute(
            update(Redemption)
            .where(Redemption.id == red.id, Redemption.status == "redeemed")
            .values(status="rolled_back", rolled_back_at=now, rollback_reason=reason[:500])
            .returning(Redemption.id),
            execution_options={"synchronize_session": False},
        )
    ).first()
    if won is None:
        raise Conflict(
            "This redemption has already been rolled back", "该核销已撤销", code="already_rolled_back"
        )
    balance_after: int | None = None
    if red.kind == "code":
        await _set_code_state(session, red.code_id, "redeemed", "issued", now)
        await _move_item(session, red.grant_item_id, "redeemed", "held")
    elif red.kind == "reusable_code":
        await session.execute(
            update(CodeAccount)
            .where(CodeAccount.code_id == red.code_id, CodeAccount.uses > 0)
            .values(uses=CodeAccount.uses - 1, updated_at=now),
            execution_options={"synchronize_session": False},
        )
        await _set_code_state(session, red.code_id, "redeemed", "issued", now)
        await _move_item(session, red.grant_item_id, "redeemed", "held")
    else:
        amount = int(red.amount or 0)
        row = (
            await session.execute(
                update(CodeAccount)
                .where(CodeAccount.code_id == red.code_id)
                .values(balance=CodeAccount.balance + amount, uses=CodeAccount.uses - 1, updated_at=now)
                .returning(CodeAccount.balance),
                execution_options={"synchronize_session": False},
            )
        ).one()
        balance_after = int(row.balance)
        session.add(
            LedgerEntry(
                code_id=red.code_id,
                redemption_id=red.id,
                kind="rollback",
                delta=amount,
                balance_after=balance_after,
                created_at=now,
            )
        )
        await _set_code_state(session, red.code_id, "redeemed", "issued", now)
        await _move_item(session, red.grant_item_id, "redeemed", "held")
    red = await find_redemption(session, red.id)
    facts = {**_facts(red), "reason": reason[:500], "balance_after": balance_after}
    record(session, "code.redemption_rolled_back", "code", red.code_id, facts)
    emit(session, "code.redemption_rolled_back", red.code_id, facts)
    await session.flush()
    return red


# --- reading ----------------------------------------------------------------------------------------------


def redemption_out(red: Redemption, window_minutes: int) -> RedemptionOut:
    return RedemptionOut(
        red.id,
        red.code_id,
        masked(red.code_last4),
        red.product_id,
        red.kind,
        red.status,
        red.store,
        red.terminal,
        red.reference,
        red.amount,
        red.currency,
        red.balance_after,
        red.use_number,
        red.member_id,
        red.grant_item_id,
        red.user_id,
        red.client_id,
        red.created_at,
        red.created_at + dt.timedelta(minutes=window_minutes),
        red.rolled_back_at,
        red.rollback_reason,
    )


async def list_redemptions(
    session: AsyncSession,
    *,
    last4: str | None = None,
    store: str | None = None,
    terminal: str | None = None,
    since: dt.datetime | None = None,
    status: str | None = None,
    cursor: uuid.UUID | None = None,
    limit: int = 50,
) -> RedemptionPage:
    """Redemptions newest first, filtered by the code's last four characters, store, terminal, time, status."""
    q: Select[tuple[Redemption]] = select(Redemption).order_by(Redemption.id.desc()).limit(limit + 1)
    if last4:
        q = q.where(Redemption.code_last4 == last4.strip()[-4:])
    if store:
        q = q.where(Redemption.store == store.strip())
    if terminal:
        q = q.where(Redemption.terminal == terminal.strip())
    if since is not None:
        if since.tzinfo is None:
            raise ValidationFailed(
                "since needs a time zone (e.g. 2026-01-01T00:00:00+08:00)",
                "since 需要带时区（例如 2026-01-01T00:00:00+08:00）",
                errors=[FieldError(field="since", message="timezone required")],
            )
        q = q.where(Redemption.created_at >= since)
    if status:
        q = q.where(Redemption.status == status)
    if cursor is not None:
        q = q.where(Redemption.id < cursor)
    rows: Sequence[Redemption] = (await session.execute(q)).scalars().all()
    window = (await get_settings(session)).rollback_window_minutes
    page = rows[:limit]
    return RedemptionPage(
        [redemption_out(r, window) for r in page], page[-1].id if len(rows) > limit else None
    )


async def stored_value_ledger(session: AsyncSession, code_id: uuid.UUID) -> LedgerOut:
    """A stored-value card's balance and every movement of it, oldest first."""
    code = (await session.execute(select(Code).where(Code.id == code_id))).scalar_one_or_none()
    if code is None:
        raise _not_found()
    product = await _product(session, code.product_id)
    if product.kind != "stored_value":
        raise ValidationFailed(
            "This code is not a stored-value card", "该券码不是储值卡", code="not_stored_value"
        )
    account = await _account(session, code.id)
    entries = (
        (
            await session.execute(
                select(LedgerEntry).where(LedgerEntry.code_id == code.id).order_by(LedgerEntry.id)
            )
        )
        .scalars()
        .all()
    )
    initial = (
        account.initial_balance if account and account.initial_balance is not None else product.face_value
    )
    balance = account.balance if account and account.balance is not None else product.face_value
    return LedgerOut(
        code.id,
        masked(code.last4),
        product.id,
        product.currency,
        int(initial),
        int(balance),
        [
            LedgerEntryOut(e.id, e.kind, e.delta, e.balance_after, e.redemption_id, e.created_at)
            for e in entries
        ],
    )


async def redemption_count(session: AsyncSession, code_id: uuid.UUID) -> int:
    """Redemptions of a code that stand (not rolled back)."""
    return int(
        await session.scalar(
            select(func.count())
            .select_from(Redemption)
            .where(Redemption.code_id == code_id, Redemption.status == "redeemed")
        )
        or 0
    )
