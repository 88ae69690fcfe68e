"""Rolling a redemption back within the tenant's window: the code, the use or the balance comes back.

The redemption row flips ``redeemed → rolled_back`` in one conditional UPDATE, so a rollback happens once
however many are attempted; the grant's lock is taken first, as a redemption and a void take it.

Domains above are told in the rollback's transaction through the extension point
``redemption.code_rolled_back`` (e.g. the channel orders, which reopen a code a channel sold).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.db.base import utcnow
from core.domains import extensions
from core.errors import Conflict, FieldError, ValidationFailed
from core.events.services import emit
from core.grants.lifecycle import grant_of_item, lock_grant, sync_grant
from core.inventory.models import Code
from core.redemption.models import CodeAccount, LedgerEntry, Redemption
from core.redemption.records import find_redemption, get_settings, redemption_facts
from core.redemption.redeem import move_item, set_code_state

#: The extension point told of every rollback, in its transaction: ``async follow(session, code_id, facts)``
#: (``facts`` as for ``redemption.code_redeemed``, with ``reason``).
CODE_ROLLED_BACK = "redemption.code_rolled_back"


def _already_rolled_back() -> Conflict:
    return Conflict(
        "This redemption has already been rolled back", "该核销已撤销", code="already_rolled_back"
    )


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
        raise _already_rolled_back()
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
        raise _already_rolled_back()
    balance_after = await _restore_account(session, red, now)
    await set_code_state(session, red.code_id, "redeemed", "issued", now)
    await move_item(session, red.grant_item_id, "rollback")
    # Read under the code's row lock (after the grant's, as a void takes them): a concurrent void either
    # committed before (seen here) or finds this unit held afterwards and voids it.
    state = await session.scalar(select(Code.state).where(Code.id == red.code_id).with_for_update())
    if red.grant_item_id is not None and state == "voided":
        # the code was voided in the inventory since (a recall): the unit comes back, but not usable
        await move_item(session, red.grant_item_id, "void")
    if grant_id is not None:
        await sync_grant(session, grant_id, "rollback", locked=locked)
    red = won
    facts = {**redemption_facts(red), "reason": reason[:500], "balance_after": balance_after}
    record(session, "code.redemption_rolled_back", "code", red.code_id, facts)
    emit(session, "code.redemption_rolled_back", red.code_id, facts)
    for follow in extensions(CODE_ROLLED_BACK):  # e.g. a channel that sold the code: the code reopens there
        await follow(session, red.code_id, facts)
    await session.flush()
    return red


async def _restore_account(session: AsyncSession, red: Redemption, now: dt.datetime) -> int | None:
    """Give a reusable code its use back, or a stored-value card its amount (with a ledger entry): the
    card's balance after (None for the other kinds; a single-use code has no account)."""
    if red.kind == "code":
        return None
    if red.kind == "reusable_code":
        await session.execute(
            update(CodeAccount)
            .where(CodeAccount.code_id == red.code_id, CodeAccount.uses > 0)
            .values(uses=CodeAccount.uses - 1, updated_at=now),
            execution_options={"synchronize_session": False},
        )
        return None
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
    return balance_after
