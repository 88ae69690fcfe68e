"""Code accounts: the use count of a reusable code and the balance of a stored-value card, and the card's
ledger.

Both change by one conditional write that only as many transactions can win as there are uses (or as
the balance covers): ``code_accounts.uses + 1 WHERE uses < <uses handed out>`` and
``code_accounts.balance - amount WHERE balance >= amount`` (with a CHECK constraint ``balance >= 0`` under
it). An account is opened by the first use, in the same statement (an upsert).
"""

from __future__ import annotations

import datetime as dt
import uuid
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, Row, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.catalog.services import find_product
from core.db.context import require_tenant
from core.db.ids import new_id
from core.db.results import rowcount
from core.errors import ValidationFailed
from core.inventory.models import Code
from core.inventory.vault import masked
from core.redemption import refusals
from core.redemption.lookup import dialect_of, hot_connection, tenant_param
from core.redemption.models import CodeAccount, LedgerEntry
from core.redemption.schemas import LedgerEntryOut, LedgerOut


async def code_account(session: AsyncSession, code_id: uuid.UUID) -> CodeAccount | None:
    """The code's account, read fresh (None until its first use)."""
    return (
        await session.execute(
            select(CodeAccount)
            .where(CodeAccount.code_id == code_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


def handed_out(code: Row[Any]) -> int:
    """Uses of a reusable code handed out so far (allocation decrements ``uses_left`` per unit)."""
    limit = code.max_uses or 0
    if code.uses_left is None:
        return limit if code.state in ("issued", "redeemed") else 0
    return max(limit - code.uses_left, 0)


def _account_values(code: Row[Any], now: dt.datetime, *, uses: int, spent: int = 0) -> dict[str, Any]:
    stored = code.kind == "stored_value"
    return {
        "b_tenant": require_tenant(),
        "b_id": new_id(),
        "b_code_id": code.id,
        "b_uses": uses,
        "b_balance": code.face_value - spent if stored else None,
        "b_initial_balance": code.face_value if stored else None,
        "b_currency": code.currency,
        "b_now": now,
    }


# Core on the session's connection: no ORM bookkeeping for these upserts; the tenant is ``:b_tenant``.
_ACCOUNTS = CodeAccount.__table__
_ACCOUNT_COLUMNS = ("id", "code_id", "uses", "balance", "initial_balance", "currency")


def _account_insert(dialect: str) -> Any:
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    a = _ACCOUNTS.c
    values: dict[str, Any] = {c: bindparam(f"b_{c}", type_=a[c].type) for c in _ACCOUNT_COLUMNS}
    now = bindparam("b_now", type_=a.updated_at.type)
    return insert(_ACCOUNTS).values(tenant_id=tenant_param(), **values, updated_at=now, created_at=now)


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
    connection = await hot_connection(session)
    result = await connection.execute(_open_stmt(dialect_of(session)), _account_values(code, now, uses=0))
    return bool(rowcount(result))


async def use_once(session: AsyncSession, code: Row[Any], handed: int, now: dt.datetime) -> int | None:
    """Count one use of a reusable code, opening its account on the first; None when all are used.

    One statement: the insert of the first use, or the conditional ``uses + 1 WHERE uses < handed``.
    PostgreSQL locks the conflicting row and evaluates the WHERE on its newest version, so concurrent
    redeemers queue on it and only as many win as there are uses.
    """
    params = {**_account_values(code, now, uses=1), "b_handed": handed}
    connection = await hot_connection(session)
    row = (await connection.execute(_use_stmt(dialect_of(session)), params)).first()
    return None if row is None else int(row.uses)


async def spend(
    session: AsyncSession, code: Row[Any], amount: int, now: dt.datetime
) -> tuple[int, int, bool] | None:
    """Take ``amount`` off a stored-value balance: (balance after, use number, account opened now), or None.

    Like :func:`use_once`, one conditional upsert (``balance - amount WHERE balance >= amount``); the
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
    connection = await hot_connection(session)
    row = (await connection.execute(_spend_stmt(dialect_of(session)), params)).first()
    return None if row is None else (int(row.balance), int(row.uses), row.id == params["b_id"])


async def stored_value_ledger(session: AsyncSession, code_id: uuid.UUID) -> LedgerOut:
    """A stored-value card's balance and every movement of it, oldest first."""
    code = (await session.execute(select(Code).where(Code.id == code_id))).scalar_one_or_none()
    if code is None:
        raise refusals.not_found()
    product = await find_product(session, code.product_id)
    if product.kind != "stored_value":
        raise ValidationFailed(
            "This code is not a stored-value card", "该券码不是储值卡", code="not_stored_value"
        )
    account = await code_account(session, code.id)
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
