"""Redemption (核销): validate, redeem exactly once, reusable use counts, stored-value balances, rollback.

Exactly once is a property of the database, not of the caller: every redemption is one conditional
UPDATE that only one transaction can win —

* a single-use code: ``codes.state`` ``issued → redeemed`` ``WHERE state = 'issued'``;
* a reusable code: ``code_accounts.uses + 1`` ``WHERE uses < <uses handed out>``;
* a stored-value card: ``code_accounts.balance - amount`` ``WHERE balance >= amount`` (and a CHECK
  constraint ``balance >= 0`` under it).

On PostgreSQL a concurrent redeemer blocks on the row lock, re-evaluates the WHERE after the winner commits
and matches nothing, so it is told ``already_redeemed`` with when and where the winner redeemed.

A code held by members (grant items) gives up one held item per use that consumes it: the item of the
member (or the item) the caller names, else the oldest. The item is chosen and marked in one UPDATE after
the conditional write above, whose row lock orders concurrent redeemers of the same code.

A code is looked up by its HMAC digest (tenant key), trying its canonical form first (what
:func:`core.inventory.vault.digest_of` stores), then forms with the spaces, dashes and case a person or a
scanner may have changed. Every attempt passes the risk gate (blocklists, lockouts, limits); wrong codes and
wrong PINs feed its failed-attempt velocity (:func:`core.risk.gate.record_failure`), which the engine writes
in a transaction of its own, so the request's rollback cannot undo the count.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Row, Select, and_, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core.audit.services import record
from core.catalog.models import Product
from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.ids import new_id
from core.db.results import rowcount
from core.errors import Conflict, DomainError, FieldError, NotFound, ValidationFailed
from core.events.services import emit
from core.grants.lifecycle import grant_of_item, item_move, lock_grant, sync_grant
from core.grants.models import GrantItem
from core.inventory import codegen
from core.inventory.models import Code
from core.inventory.vault import masked, unseal
from core.normalize import typed
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
    """The forms of a typed or scanned code to look up, most likely first.

    The vault digests the canonical form (:func:`core.normalize.typed`: NFKC, no spaces, dashes or invisible
    characters, case kept), so that form comes first, then upper-cased and in Crockford form (people type O
    for 0). Codes stored before that rule were digested as given (surrounding whitespace removed, inner
    spaces and dashes kept): their forms follow, as given, with spaces as dashes, and in the generated
    layout (groups of four, then the check symbol).
    """
    key = typed(raw)
    out = [key, key.upper()]
    flat = codegen.normalize(key)
    spaced = unicodedata.normalize("NFKC", raw).strip()
    dashed = _SPACES.sub("-", spaced)
    out += [flat, spaced, dashed, dashed.upper()]
    if len(flat) > 1:
        body = flat[:-1]
        out.append("-".join([body[i : i + 4] for i in range(0, len(body), 4)] + [flat[-1]]))
    return list(dict.fromkeys(c for c in out if c))[:MAX_CANDIDATES]


_LOOKUP_COLUMNS = (
    Code.id,
    Code.product_id,
    Code.digest,
    Code.secret,
    Code.last4,
    Code.has_pin,
    Code.state,
    Code.expires_at,
    Code.uses_left,
    Product.kind,
    Product.name_zh,
    Product.currency,
    Product.face_value,
    Product.max_uses,
)


def _first_held(code_id: Any, by_member: bool, by_item: bool) -> Any:
    """The id of the unredeemed, unexpired grant item a redemption of ``code_id`` uses (a scalar subquery).

    The given member's (``:b_member_id``) or the given item (``:b_grant_item_id``), else the oldest: one unit
    per use of a shared reusable code. A unit past its own expiry (``:b_now``; a "days after issue" validity
    ends before the code's) is never used, even before the expiry sweep has marked it ``expired``.
    """
    q = select(GrantItem.id).where(
        GrantItem.code_id == code_id,
        GrantItem.status == "held",
        or_(GrantItem.expires_at.is_(None), GrantItem.expires_at > bindparam("b_now")),
    )
    if by_member:
        q = q.where(GrantItem.member_id == bindparam("b_member_id"))
    if by_item:
        q = q.where(GrantItem.id == bindparam("b_grant_item_id"))
    return q.order_by(GrantItem.id).limit(1).scalar_subquery()


def _holder_params(data: RedeemIn, now: dt.datetime) -> dict[str, Any]:
    return {"b_member_id": data.member_id, "b_grant_item_id": data.grant_item_id, "b_now": now}


def _lapsed(code_id: Any, by_member: bool, by_item: bool) -> Any:
    """Whether a unit of ``code_id`` (the given member's / the given item) expired unredeemed (EXISTS)."""
    q = select(GrantItem.id).where(
        GrantItem.code_id == code_id,
        or_(
            GrantItem.status == "expired",
            and_(GrantItem.status == "held", GrantItem.expires_at <= bindparam("b_now")),
        ),
    )
    if by_member:
        q = q.where(GrantItem.member_id == bindparam("b_member_id"))
    if by_item:
        q = q.where(GrantItem.id == bindparam("b_grant_item_id"))
    return q.exists()


# The hot path's statements are built once per shape (building one costs more than running it); the
# tenant filter still adds the tenant to every execution.


@cache
def _lookup(with_window: bool, by_member: bool, by_item: bool) -> Select:
    holder = aliased(GrantItem, name="holder")
    q = select(
        *_LOOKUP_COLUMNS,
        holder.id.label("holder_id"),
        holder.member_id.label("holder_member_id"),
        holder.grant_id.label("holder_grant_id"),
        _lapsed(Code.id, by_member, by_item).correlate(Code).label("holder_lapsed"),
    )
    if with_window:  # the tenant filter (and RLS) keep every table here, subqueries too, to the tenant
        window = select(RedemptionSettings.rollback_window_minutes).scalar_subquery()
        q = q.add_columns(window.label("rollback_window"))
    held = _first_held(Code.id, by_member, by_item).correlate(Code)
    return (
        q.select_from(Code)
        .join(Product, and_(Product.tenant_id == Code.tenant_id, Product.id == Code.product_id))
        .outerjoin(holder, and_(holder.tenant_id == Code.tenant_id, holder.id == held))
        .where(Code.digest.in_(bindparam("b_digests", expanding=True)))
    )


async def _find_code(
    session: AsyncSession, kernel: Any, data: RedeemIn, now: dt.datetime, *, with_window: bool = False
) -> tuple[Row[Any] | None, Any]:
    """The code whose digest matches the most literal candidate form of ``data.code``, in one statement.

    The row carries the code's and its product's columns, the grant item a redemption would use
    (``holder_id``, ``holder_member_id``) and, ``with_window``, the tenant's rollback window
    (``rollback_window``, NULL when never set).
    """
    cipher = await kernel.keys.cipher(session)
    # each form digested exactly as it is (the first forms are canonical; the rest match older digests)
    digests = [cipher.digest(c.encode("utf-8")) for c in code_candidates(data.code)]
    stmt = _lookup(with_window, data.member_id is not None, data.grant_item_id is not None)
    rows = (await session.execute(stmt, {"b_digests": digests, **_holder_params(data, now)})).all()
    by_digest = {row.digest: row for row in rows}
    for d in digests:
        if d in by_digest:
            return by_digest[d], cipher
    return None, cipher


def _pin_matches(cipher: Any, code: Row[Any], given: str) -> bool:
    _, pin = unseal(cipher, code.digest, code.secret)
    return hmac.compare_digest(typed(given).encode("utf-8"), typed(pin or "").encode("utf-8"))


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


def _handed_out(code: Row[Any]) -> int:
    """Uses of a reusable code handed out so far (allocation decrements ``uses_left`` per unit)."""
    limit = code.max_uses or 0
    if code.uses_left is None:
        return limit if code.state in ("issued", "redeemed") else 0
    return max(limit - code.uses_left, 0)


def _holder_missing(data: RedeemIn) -> NotFound:
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


@dataclass
class _Checked:
    """A code that passed the checks (the lookup row), with what validate reports."""

    code: Row[Any]
    uses: int | None = None
    uses_remaining: int | None = None
    balance: int | None = None


async def _check(
    session: AsyncSession,
    kernel: Any,
    data: RedeemIn,
    subject: RiskSubject,
    now: dt.datetime,
    *,
    redeeming: bool = False,
) -> _Checked:
    """Find the code, check its PIN and whether it may be redeemed now (reads only).

    ``redeeming`` leaves the use count and the balance to the conditional write that follows (it refuses
    on its own), so the redemption does not read them first.
    """
    code, cipher = await _find_code(session, kernel, data, now, with_window=redeeming)
    if code is None:
        await _failed(session, kernel.settings, subject, _not_found())
    if code.has_pin:
        if not data.pin or not data.pin.strip():
            raise _pin_required()
        if not _pin_matches(cipher, code, data.pin):
            await _failed(session, kernel.settings, subject, _pin_mismatch())
    if code.kind not in REDEEMABLE_KINDS:
        raise _not_found()
    if code.kind == "stored_value":
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
    checked = _Checked(code)
    pinned = data.member_id is not None or data.grant_item_id is not None
    if code.kind == "code":
        if code.state == "redeemed":
            raise await _already_redeemed(session, code.id)
        if code.state != "issued":
            raise _not_issued()
    elif code.kind == "reusable_code":
        handed = _handed_out(code)
        if handed <= 0:
            raise _not_issued()
        if not redeeming or code.state == "redeemed" or (pinned and code.holder_id is None):
            account = await _account(session, code.id)
            uses = account.uses if account else 0
            if uses >= handed or code.state == "redeemed":
                raise _uses_exhausted(uses, handed)
            checked.uses, checked.uses_remaining = uses, handed - uses
    else:
        if code.state == "redeemed":
            raise _insufficient(0, data.amount, code.currency)
        if code.state != "issued":
            raise _not_issued()
        if not redeeming:
            account = await _account(session, code.id)
            balance = account.balance if account and account.balance is not None else code.face_value
            if data.amount is not None and balance < data.amount:
                raise _insufficient(balance, data.amount, code.currency)
            checked.balance = balance
    if code.holder_id is None and code.holder_lapsed:
        raise _expired(None)  # the member's unit expired (its validity can end before the code's)
    if pinned and code.holder_id is None:
        raise _holder_missing(data)
    return checked


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
            code = c.code
            raise _ValidateOnly(
                ValidationOut(
                    True,
                    code.id,
                    masked(code.last4),
                    code.product_id,
                    code.name_zh,
                    code.kind,
                    code.expires_at,
                    code.currency,
                    c.uses,
                    c.uses_remaining,
                    c.balance,
                    code.holder_member_id,
                    code.holder_id,
                )
            )
    except _ValidateOnly as ok:
        return ok.result


# --- redeeming ----------------------------------------------------------------------------------------------


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else ""


def _upsert(session: AsyncSession) -> Any:
    return pg_insert if _dialect(session) == "postgresql" else sqlite_insert


def _account_values(code: Row[Any], now: dt.datetime, *, uses: int, spent: int = 0) -> dict[str, Any]:
    stored = code.kind == "stored_value"
    return {
        "b_id": new_id(),
        "b_code_id": code.id,
        "b_uses": uses,
        "b_balance": code.face_value - spent if stored else None,
        "b_initial_balance": code.face_value if stored else None,
        "b_currency": code.currency,
        "b_now": now,
    }


_ACCOUNTS = CodeAccount.__table__  # Core: no ORM bookkeeping for these upserts
_ACCOUNT_COLUMNS = ("id", "code_id", "uses", "balance", "initial_balance", "currency")


def _account_insert(dialect: str) -> Any:
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    values: dict[str, Any] = {c: bindparam(f"b_{c}") for c in _ACCOUNT_COLUMNS}
    return insert(_ACCOUNTS).values(**values, updated_at=bindparam("b_now"), created_at=bindparam("b_now"))


@cache
def _open_stmt(dialect: str) -> Any:
    return _account_insert(dialect).on_conflict_do_nothing(index_elements=["tenant_id", "code_id"])


@cache
def _use_stmt(dialect: str) -> Any:
    return (
        _account_insert(dialect)
        .on_conflict_do_update(
            index_elements=["tenant_id", "code_id"],
            set_={"uses": _ACCOUNTS.c.uses + 1, "updated_at": bindparam("b_now")},
            where=_ACCOUNTS.c.uses < bindparam("b_handed"),
        )
        .returning(_ACCOUNTS.c.uses)
    )


@cache
def _spend_stmt(dialect: str) -> Any:
    amount = bindparam("b_amount", type_=BigInteger())
    return (
        _account_insert(dialect)
        .on_conflict_do_update(
            index_elements=["tenant_id", "code_id"],
            set_={
                "balance": _ACCOUNTS.c.balance - amount,
                "uses": _ACCOUNTS.c.uses + 1,
                "updated_at": bindparam("b_now"),
            },
            where=_ACCOUNTS.c.balance >= amount,
        )
        .returning(_ACCOUNTS.c.id, _ACCOUNTS.c.balance, _ACCOUNTS.c.uses)
    )


async def _open_account(session: AsyncSession, code: Row[Any], now: dt.datetime) -> bool:
    """Create the code's account if it has none (balance = face value for stored value); True if created."""
    result = await session.execute(_open_stmt(_dialect(session)), _account_values(code, now, uses=0))
    return bool(rowcount(result))


async def _use_once(session: AsyncSession, code: Row[Any], handed: int, now: dt.datetime) -> int | None:
    """Count one use of a reusable code, opening its account on the first; None when all are used.

    One statement: the insert of the first use, or the conditional ``uses + 1 WHERE uses < handed``.
    PostgreSQL locks the conflicting row and evaluates the WHERE on its newest version, so concurrent
    redeemers queue on it and only as many win as there are uses.
    """
    params = {**_account_values(code, now, uses=1), "b_handed": handed}
    row = (await session.execute(_use_stmt(_dialect(session)), params)).first()
    return None if row is None else int(row.uses)


async def _spend(
    session: AsyncSession, code: Row[Any], amount: int, now: dt.datetime
) -> tuple[int, int, bool] | None:
    """Take ``amount`` off a stored-value balance: (balance after, use number, account opened now), or None.

    Like :func:`_use_once`, one conditional upsert (``balance - amount WHERE balance >= amount``); the
    account is new when the returned id is the one inserted. An amount above the face value cannot open
    an account, so it only updates one (a face value lowered after the card was first spent).
    """
    if amount > code.face_value:
        opened = await _open_account(session, code, now)
        row = (
            await session.execute(
                update(CodeAccount)
                .where(CodeAccount.code_id == code.id, CodeAccount.balance >= amount)
                .values(balance=CodeAccount.balance - amount, uses=CodeAccount.uses + 1, updated_at=now)
                .returning(CodeAccount.balance, CodeAccount.uses),
                execution_options={"synchronize_session": False},
            )
        ).first()
        return None if row is None else (int(row.balance), int(row.uses), opened)
    params = {**_account_values(code, now, uses=1, spent=amount), "b_amount": amount}
    row = (await session.execute(_spend_stmt(_dialect(session)), params)).first()
    return None if row is None else (int(row.balance), int(row.uses), row.id == params["b_id"])


@cache
def _state_stmt(fresh_only: bool) -> Any:
    stmt = update(Code).where(Code.id == bindparam("b_code_id"), Code.state == bindparam("b_old"))
    if fresh_only:
        stmt = stmt.where(or_(Code.expires_at.is_(None), Code.expires_at > bindparam("b_now")))
    return stmt.values(state=bindparam("b_new"), state_changed_at=bindparam("b_now")).returning(Code.id)


async def _set_code_state(
    session: AsyncSession,
    code_id: uuid.UUID,
    old: str,
    new: str,
    now: dt.datetime,
    *,
    fresh_only: bool = False,
) -> bool:
    result = await session.execute(
        _state_stmt(fresh_only),
        {"b_code_id": code_id, "b_old": old, "b_new": new, "b_now": now},
        execution_options={"synchronize_session": False},
    )
    return result.first() is not None


async def _move_item(session: AsyncSession, item_id: uuid.UUID | None, event: str) -> None:
    """Move a grant item by ``event`` of the state machine (:mod:`core.grants.lifecycle`), if it is in the
    event's source status."""
    if item_id is not None:
        old, new = item_move(event)
        await session.execute(
            update(GrantItem).where(GrantItem.id == item_id, GrantItem.status == old).values(status=new),
            execution_options={"synchronize_session": False},
        )


_HELD, _REDEEMED = item_move("redeem")


@cache
def _take_stmt(by_member: bool, by_item: bool) -> Any:
    return (
        update(GrantItem)
        .where(
            GrantItem.id == _first_held(bindparam("b_code_id"), by_member, by_item),
            GrantItem.status == _HELD,
        )
        .values(status=_REDEEMED)
        .returning(GrantItem.id, GrantItem.member_id, GrantItem.grant_id)
    )


async def _take_item(
    session: AsyncSession, data: RedeemIn, code_id: uuid.UUID, now: dt.datetime
) -> Row[Any] | None:
    """Mark the grant item the redemption uses (see :func:`_first_held`) redeemed: its (id, member_id).

    Chosen and moved in one statement after the redemption's own conditional write, whose row lock
    orders concurrent redeemers of one code, so each takes a different item.
    """
    stmt = _take_stmt(data.member_id is not None, data.grant_item_id is not None)
    return (
        await session.execute(
            stmt,
            {"b_code_id": code_id, **_holder_params(data, now)},
            execution_options={"synchronize_session": False},
        )
    ).first()


_REDEMPTIONS = Redemption.__table__
_LEDGER = LedgerEntry.__table__


async def redeem(session: AsyncSession, kernel: Any, data: RedeemIn, caller: Caller) -> Redemption:
    """Redeem a code exactly once (one use of a reusable code, ``amount`` of a stored-value card).

    The redemption is written with Core: the returned object is not in the session.
    """
    return (await _redeem(session, kernel, data, caller))[0]


async def redeem_out(session: AsyncSession, kernel: Any, data: RedeemIn, caller: Caller) -> RedemptionOut:
    """:func:`redeem`, answered as the API shows it (with the rollback deadline)."""
    red, window = await _redeem(session, kernel, data, caller)
    return redemption_out(red, window)


async def _redeem(
    session: AsyncSession, kernel: Any, data: RedeemIn, caller: Caller
) -> tuple[Redemption, int]:
    """The redemption and the tenant's rollback window (minutes).

    The hot path: one lookup (code, product, holder, window), the conditional write, the grant item (if
    the code has holders), the redemption row (and ledger rows), then the audit record and the event.
    """
    subject = _subject(caller, data.terminal)
    async with guard(session, kernel.settings, "redeem", subject):
        now = utcnow()
        code = (await _check(session, kernel, data, subject, now, redeeming=True)).code
        locked = None
        if code.holder_grant_id is not None:
            # the grant's lock comes first, as in a void: the two never wait on each other in a circle
            locked = await lock_grant(session, code.holder_grant_id)
        pinned = data.member_id is not None or data.grant_item_id is not None
        balance_after: int | None = None
        use_number: int | None = None
        opened = False
        if code.kind == "code":
            if not await _set_code_state(session, code.id, "issued", "redeemed", now, fresh_only=True):
                state = await session.scalar(select(Code.state).where(Code.id == code.id))
                if state == "redeemed":
                    raise await _already_redeemed(session, code.id)
                raise _voided() if state == "voided" else _expired(code.expires_at)
            consumed = True
        elif code.kind == "reusable_code":
            handed = _handed_out(code)
            use_number = await _use_once(session, code, handed, now)
            if use_number is None:
                raise _uses_exhausted(handed, handed)
            if code.max_uses and use_number >= code.max_uses:
                await _set_code_state(session, code.id, "issued", "redeemed", now)
            consumed = True
        else:
            amount = int(data.amount or 0)
            spent = await _spend(session, code, amount, now)
            if spent is None:
                left = await session.scalar(select(CodeAccount.balance).where(CodeAccount.code_id == code.id))
                raise _insufficient(int(left or 0), amount, code.currency)
            balance_after, use_number, opened = spent
            consumed = balance_after == 0
            if consumed:
                await _set_code_state(session, code.id, "issued", "redeemed", now)
        holder_id, holder_member_id = code.holder_id, code.holder_member_id
        used_grant = code.holder_grant_id  # a stored-value card partly spent stays held, its grant is used
        if holder_id is not None and consumed:
            # the lookup saw a holder: take an item, chosen now (after the write that orders redeemers)
            item = await _take_item(session, data, code.id, now)
            if item is None and pinned:
                raise _holder_missing(data)
            holder_id, holder_member_id = (item.id, item.member_id) if item is not None else (None, None)
            used_grant = item.grant_id if item is not None else None
        values: dict[str, Any] = {
            "id": new_id(),
            "code_id": code.id,
            "product_id": code.product_id,
            "kind": code.kind,
            "code_last4": code.last4,
            "grant_item_id": holder_id,
            "member_id": holder_member_id,
            "store": data.store.strip(),
            "terminal": data.terminal.strip(),
            "reference": (data.reference or "").strip() or None,
            "amount": data.amount,
            "currency": code.currency,
            "balance_after": balance_after,
            "use_number": use_number,
            "user_id": caller.user_id,
            "client_id": caller.client_id,
            "status": "redeemed",
            "rolled_back_at": None,
            "rollback_reason": None,
            "created_at": now,
        }
        await session.execute(_REDEMPTIONS.insert(), values)
        red = Redemption(**values)
        if code.kind == "stored_value":
            entries: list[dict[str, Any]] = []
            if opened:
                entries.append(
                    {
                        "id": new_id(),
                        "code_id": code.id,
                        "redemption_id": None,
                        "kind": "opening",
                        "delta": code.face_value,
                        "balance_after": code.face_value,
                        "created_at": now,
                    }
                )
            entries.append(
                {
                    "id": new_id(),
                    "code_id": code.id,
                    "redemption_id": red.id,
                    "kind": "redeem",
                    "delta": -int(data.amount or 0),
                    "balance_after": int(balance_after or 0),
                    "created_at": now,
                }
            )
            await session.execute(_LEDGER.insert(), entries)
        if used_grant is not None:  # after the redemption row: a partly spent card counts as used
            await sync_grant(session, used_grant, "redeem", locked=locked)
        facts = _facts(red)
        record(session, "code.redeemed", "code", code.id, facts)
        emit(session, "code.redeemed", code.id, facts)
        await session.flush()
    window = code.rollback_window
    return red, DEFAULT_ROLLBACK_WINDOW_MINUTES if window is None else int(window)


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
    grant_id = await grant_of_item(session, red.grant_item_id) if red.grant_item_id else None
    locked = await lock_grant(session, grant_id) if grant_id else None  # first, as in a redemption and a void
    won = (
        await session.execute(
            update(Redemption)
            .where(Redemption.id == red.id, Redemption.status == "redeemed")
            .values(status="rolled_back", rolled_back_at=now, rollback_reason=reason[:500])
            .returning(Redemption),
            execution_options={"synchronize_session": False, "populate_existing": True},
        )
    ).scalar_one_or_none()
    if won is None:
        raise Conflict(
            "This redemption has already been rolled back", "该核销已撤销", code="already_rolled_back"
        )
    balance_after: int | None = None
    if red.kind == "code":
        await _set_code_state(session, red.code_id, "redeemed", "issued", now)
        await _move_item(session, red.grant_item_id, "rollback")
    elif red.kind == "reusable_code":
        await session.execute(
            update(CodeAccount)
            .where(CodeAccount.code_id == red.code_id, CodeAccount.uses > 0)
            .values(uses=CodeAccount.uses - 1, updated_at=now),
            execution_options={"synchronize_session": False},
        )
        await _set_code_state(session, red.code_id, "redeemed", "issued", now)
        await _move_item(session, red.grant_item_id, "rollback")
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
        await _move_item(session, red.grant_item_id, "rollback")
    # Read under the code's row lock (after the grant's, as a void takes them): a concurrent void either
    # committed before (seen here) or finds this unit held afterwards and voids it.
    state = await session.scalar(select(Code.state).where(Code.id == red.code_id).with_for_update())
    if red.grant_item_id is not None and state == "voided":
        # the code was voided in the inventory since (a recall): the unit comes back, but not usable
        await _move_item(session, red.grant_item_id, "void")
    if grant_id is not None:
        await sync_grant(session, grant_id, "rollback", locked=locked)
    red = won
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
    q = select(Redemption).order_by(Redemption.id.desc()).limit(limit + 1)
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
