"""Redeeming (核销) a code exactly once: one use of a reusable code, ``amount`` of a stored-value card.

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

The lookup is :mod:`core.redemption.lookup`, the checks before the write :mod:`core.redemption.checks`,
the accounts' conditional writes :mod:`core.redemption.accounts`; undoing is :mod:`core.redemption.rollback`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Row, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.db.base import utcnow
from core.db.ids import new_id
from core.domains import extensions
from core.events.services import emit
from core.grants.lifecycle import item_move, lock_grant, sync_grant
from core.grants.models import GrantItem
from core.inventory.models import Code
from core.redemption import refusals
from core.redemption.accounts import handed_out, spend, use_once
from core.redemption.checks import Caller, check, risk_subject
from core.redemption.lookup import first_held, holder_params
from core.redemption.models import DEFAULT_ROLLBACK_WINDOW_MINUTES, CodeAccount, LedgerEntry, Redemption
from core.redemption.records import redemption_facts, redemption_out
from core.redemption.schemas import RedeemIn, RedemptionOut
from core.risk.gate import guard


@cache
def _state_stmt(fresh_only: bool) -> Any:
    stmt = update(Code).where(Code.id == bindparam("b_code_id"), Code.state == bindparam("b_old"))
    if fresh_only:
        stmt = stmt.where(or_(Code.expires_at.is_(None), Code.expires_at > bindparam("b_now")))
    return stmt.values(state=bindparam("b_new"), state_changed_at=bindparam("b_now")).returning(Code.id)


async def set_code_state(
    session: AsyncSession,
    code_id: uuid.UUID,
    old: str,
    new: str,
    now: dt.datetime,
    *,
    fresh_only: bool = False,
) -> bool:
    """Move the code from state ``old`` to ``new`` (``fresh_only``: unless it has expired); False if it was
    not in ``old`` (another transaction moved it first)."""
    result = await session.execute(
        _state_stmt(fresh_only),
        {"b_code_id": code_id, "b_old": old, "b_new": new, "b_now": now},
        execution_options={"synchronize_session": False},
    )
    return result.first() is not None


async def move_item(session: AsyncSession, item_id: uuid.UUID | None, event: str) -> None:
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
            GrantItem.id == first_held(bindparam("b_code_id"), by_member, by_item),
            GrantItem.status == _HELD,
        )
        .values(status=_REDEEMED)
        .returning(GrantItem.id, GrantItem.member_id, GrantItem.grant_id)
    )


async def _take_item(
    session: AsyncSession, data: RedeemIn, code_id: uuid.UUID, now: dt.datetime
) -> Row[Any] | None:
    """Mark the grant item the redemption uses (see :func:`first_held`) redeemed: its (id, member_id).

    Chosen and moved in one statement after the redemption's own conditional write, whose row lock
    orders concurrent redeemers of one code, so each takes a different item.
    """
    stmt = _take_stmt(data.member_id is not None, data.grant_item_id is not None)
    return (
        await session.execute(
            stmt,
            {"b_code_id": code_id, **holder_params(data, now)},
            execution_options={"synchronize_session": False},
        )
    ).first()


#: The extension point told of every redemption, in its transaction: ``async follow(session, code_id, facts)``
#: (provided by a domain above, e.g. the channel orders, which report a code a channel sold to that channel).
CODE_REDEEMED = "redemption.code_redeemed"

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
    subject = risk_subject(caller, data.terminal)
    async with guard(session, kernel.settings, "redeem", subject):
        now = utcnow()
        code = (await check(session, kernel, data, subject, now, redeeming=True)).code
        locked = None
        if code.holder_grant_id is not None:
            # the grant's lock comes first, as in a void: the two never wait on each other in a circle
            locked = await lock_grant(session, code.holder_grant_id)
        use = await _consume(session, code, data, now)
        holder_id, holder_member_id, used_grant = await _holder(session, code, data, use.consumed, now)
        red = await _insert_redemption(session, code, data, caller, use, holder_id, holder_member_id, now)
        if code.kind == "stored_value":
            await _insert_ledger(session, code, data, red, use, now)
        if used_grant is not None:  # after the redemption row: a partly spent card counts as used
            await sync_grant(session, used_grant, "redeem", locked=locked)
        facts = redemption_facts(red)
        record(session, "code.redeemed", "code", code.id, facts)
        emit(session, "code.redeemed", code.id, facts)
        for follow in extensions(CODE_REDEEMED):  # e.g. a channel that sold the code is told
            await follow(session, code.id, facts)
        await session.flush()
    window = code.rollback_window
    return red, DEFAULT_ROLLBACK_WINDOW_MINUTES if window is None else int(window)


@dataclass(frozen=True)
class _Use:
    """What the conditional write did: whether the code (or the holder's unit) is used up, and for a
    reusable code or a stored-value card the use number (and balance after, account opened now)."""

    consumed: bool
    balance_after: int | None = None
    use_number: int | None = None
    opened: bool = False


async def _consume(session: AsyncSession, code: Row[Any], data: RedeemIn, now: dt.datetime) -> _Use:
    """The conditional write only as many redeemers win as the code allows; the losers are refused."""
    if code.kind == "code":
        if not await set_code_state(session, code.id, "issued", "redeemed", now, fresh_only=True):
            state = await session.scalar(select(Code.state).where(Code.id == code.id))
            if state == "redeemed":
                raise await refusals.already_redeemed(session, code.id)
            raise refusals.voided() if state == "voided" else refusals.expired(code.expires_at)
        return _Use(consumed=True)
    if code.kind == "reusable_code":
        handed = handed_out(code)
        use_number = await use_once(session, code, handed, now)
        if use_number is None:
            raise refusals.uses_exhausted(handed, handed)
        if code.max_uses and use_number >= code.max_uses:
            await set_code_state(session, code.id, "issued", "redeemed", now)
        return _Use(consumed=True, use_number=use_number)
    amount = int(data.amount or 0)
    spent = await spend(session, code, amount, now)
    if spent is None:
        left = await session.scalar(select(CodeAccount.balance).where(CodeAccount.code_id == code.id))
        raise refusals.insufficient(int(left or 0), amount, code.currency)
    balance_after, use_number, opened = spent
    consumed = balance_after == 0
    if consumed:
        await set_code_state(session, code.id, "issued", "redeemed", now)
    return _Use(consumed, balance_after, use_number, opened)


async def _holder(
    session: AsyncSession, code: Row[Any], data: RedeemIn, consumed: bool, now: dt.datetime
) -> tuple[uuid.UUID | None, uuid.UUID | None, uuid.UUID | None]:
    """The grant item and member the redemption records, and the grant it uses (to sync afterwards).

    A use that consumes the code takes a held item, chosen now (after the write that orders redeemers);
    a stored-value card partly spent stays held, but its grant counts as used.
    """
    holder_id, holder_member_id = code.holder_id, code.holder_member_id
    used_grant = code.holder_grant_id
    if holder_id is not None and consumed:
        item = await _take_item(session, data, code.id, now)
        if item is None and (data.member_id is not None or data.grant_item_id is not None):
            raise refusals.holder_missing(data)
        holder_id, holder_member_id = (item.id, item.member_id) if item is not None else (None, None)
        used_grant = item.grant_id if item is not None else None
    return holder_id, holder_member_id, used_grant


async def _insert_redemption(
    session: AsyncSession,
    code: Row[Any],
    data: RedeemIn,
    caller: Caller,
    use: _Use,
    holder_id: uuid.UUID | None,
    holder_member_id: uuid.UUID | None,
    now: dt.datetime,
) -> Redemption:
    """Write the redemption row (Core: the returned object is not in the session)."""
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
        "balance_after": use.balance_after,
        "use_number": use.use_number,
        "user_id": caller.user_id,
        "client_id": caller.client_id,
        "status": "redeemed",
        "rolled_back_at": None,
        "rollback_reason": None,
        "created_at": now,
    }
    await session.execute(_REDEMPTIONS.insert(), values)
    return Redemption(**values)


async def _insert_ledger(
    session: AsyncSession, code: Row[Any], data: RedeemIn, red: Redemption, use: _Use, now: dt.datetime
) -> None:
    """A stored-value card's ledger rows: the opening balance when this use opened the account, the spend."""
    entries: list[dict[str, Any]] = []
    if use.opened:
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
            "balance_after": int(use.balance_after or 0),
            "created_at": now,
        }
    )
    await session.execute(_LEDGER.insert(), entries)
