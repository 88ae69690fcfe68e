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

The hot path runs pre-built Core statements on the session's connection, each naming its tenant
(``tenant_id = :b_tenant``; the ORM's tenant filter does not see them). On PostgreSQL the redemption row,
its ``code.redeemed`` event and the event's webhook fan-out row are one statement (data-modifying CTEs);
for a single-use code nobody holds, the conditional write above is its first CTE and the rows are written
only if it matched. The audit event is written by the same statement on PostgreSQL (what
:func:`~core.audit.services.record` writes, the sealers told by ``mark_recorded``), so a redemption is one
lookup and one write. Nothing written is read back: the returned redemption is built from the values written.

The lookup is :mod:`core.redemption.lookup`, the checks before the write :mod:`core.redemption.checks`,
the accounts' conditional writes :mod:`core.redemption.accounts`; undoing is :mod:`core.redemption.rollback`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

import msgspec
from sqlalchemy import Insert, Row, bindparam, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.context import current_actor
from core.audit.models import AuditEvent, NextPosition
from core.audit.services import mark_recorded, record
from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.ids import new_id
from core.domains import extensions
from core.events.inline import event_after, event_params
from core.events.services import emit
from core.grants.lifecycle import item_move, lock_grant, sync_grant
from core.grants.models import GrantItem
from core.inventory.models import Code
from core.redemption import refusals
from core.redemption.accounts import handed_out, spend, use_once
from core.redemption.checks import Caller, check, risk_subject
from core.redemption.lookup import dialect_of, first_held, holder_params, hot_connection, tenant_param
from core.redemption.models import DEFAULT_ROLLBACK_WINDOW_MINUTES, CodeAccount, LedgerEntry, Redemption
from core.redemption.places import resolve_place
from core.redemption.records import redemption_facts, redemption_out
from core.redemption.schemas import RedeemIn, RedemptionOut
from core.risk.gate import guard

_CODES, _ITEMS = Code.__table__, GrantItem.__table__
_REDEMPTIONS, _LEDGER = Redemption.__table__, LedgerEntry.__table__


def _code_move(fresh_only: bool) -> Any:
    """``UPDATE codes SET state = :b_new WHERE state = :b_old`` (``fresh_only``: and not expired) of the
    tenant's code ``:b_code_id``, returning its id: no row when another transaction moved it first."""
    c = _CODES.c
    now = bindparam("b_now", type_=c.state_changed_at.type)
    stmt = update(_CODES).where(
        c.tenant_id == tenant_param(),
        c.id == bindparam("b_code_id", type_=c.id.type),
        c.state == bindparam("b_old", type_=c.state.type),
    )
    if fresh_only:
        stmt = stmt.where(or_(c.expires_at.is_(None), c.expires_at > now))
    return stmt.values(state=bindparam("b_new", type_=c.state.type), state_changed_at=now).returning(c.id)


@cache
def _state_stmt(fresh_only: bool) -> Any:
    return _code_move(fresh_only)


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
    connection = await hot_connection(session)
    result = await connection.execute(
        _state_stmt(fresh_only),
        {"b_tenant": require_tenant(), "b_code_id": code_id, "b_old": old, "b_new": new, "b_now": now},
    )
    return result.first() is not None


@cache
def _item_stmt() -> Any:
    g = _ITEMS.c
    return (
        update(_ITEMS)
        .where(
            g.tenant_id == tenant_param(),
            g.id == bindparam("b_item_id", type_=g.id.type),
            g.status == bindparam("b_old", type_=g.status.type),
        )
        .values(status=bindparam("b_new", type_=g.status.type))
    )


async def move_item(session: AsyncSession, item_id: uuid.UUID | None, event: str) -> None:
    """Move a grant item by ``event`` of the state machine (:mod:`core.grants.lifecycle`), if it is in the
    event's source status."""
    if item_id is not None:
        old, new = item_move(event)
        connection = await hot_connection(session)
        params = {"b_tenant": require_tenant(), "b_item_id": item_id, "b_old": old, "b_new": new}
        await connection.execute(_item_stmt(), params)


_HELD, _REDEEMED = item_move("redeem")


@cache
def _take_stmt(by_member: bool, by_item: bool) -> Any:
    g = _ITEMS.c
    return (
        update(_ITEMS)
        .where(
            g.tenant_id == tenant_param(),
            g.id == first_held(bindparam("b_code_id", type_=g.code_id.type), by_member, by_item),
            g.status == _HELD,
        )
        .values(status=_REDEEMED)
        .returning(g.id, g.member_id, g.grant_id)
    )


async def _take_item(
    session: AsyncSession, data: RedeemIn, code_id: uuid.UUID, now: dt.datetime
) -> Row[Any] | None:
    """Mark the grant item the redemption uses (see :func:`first_held`) redeemed: its (id, member_id).

    Chosen and moved in one statement after the redemption's own conditional write, whose row lock
    orders concurrent redeemers of one code, so each takes a different item.
    """
    stmt = _take_stmt(data.member_id is not None, data.grant_item_id is not None)
    connection = await hot_connection(session)
    return (await connection.execute(stmt, {"b_code_id": code_id, **holder_params(data, now)})).first()


#: The extension point told of every redemption, in its transaction: ``async follow(session, code_id, facts)``
#: (provided by a domain above, e.g. the channel orders, which report a code a channel sold to that channel).
CODE_REDEEMED = "redemption.code_redeemed"

#: The columns a redemption is written with (``tenant_id`` and ``created_at`` come from ``:b_tenant`` and
#: ``:b_now``; ``rolled_back_at`` and ``rollback_reason`` stay NULL).
_RECORD_COLUMNS = (
    "id", "code_id", "product_id", "kind", "code_last4", "grant_item_id", "member_id", "store", "store_id",
    "terminal",
    "reference", "amount", "currency", "balance_after", "use_number", "user_id", "client_id", "status",
)  # fmt: skip


@cache
def _record_stmt(won: bool) -> Insert:
    """PostgreSQL: the redemption row, its ``code.redeemed`` event and the event's webhook fan-out row in
    one statement, ``RETURNING`` the event's id.

    ``won``: the conditional write of a single-use code (``issued → redeemed`` unless expired) comes first
    in the same statement, and the rows are written only if it matched: no row returned means another
    transaction redeemed the code first (or it expired). The UPDATE in a CTE locks and re-checks the row
    as a plain UPDATE does, so concurrent redeemers still queue on it and exactly one wins.
    """
    r = _REDEMPTIONS.c
    tenant, now = tenant_param(), bindparam("b_now", type_=r.created_at.type)
    values: dict[str, Any] = {name: bindparam(f"r_{name}", type_=r[name].type) for name in _RECORD_COLUMNS}
    values |= {"tenant_id": tenant, "created_at": now}
    ctes = []
    if won:
        move = _code_move(fresh_only=True).cte("won")
        values["code_id"] = move.c.id
        rows = select(*values.values()).select_from(move)
        ctes.append(move)
    else:
        rows = select(*values.values())
    written = insert(_REDEMPTIONS).from_select(list(values), rows, include_defaults=False)
    red = written.returning(r.id).cte("redemption")
    return event_after(red, tenant, now, ctes=(*ctes, red, _audit_after(red, tenant, now)))


def _audit_after(source: Any, tenant: Any, now: Any) -> Any:
    """The ``code.redeemed`` audit event as a CTE of the same statement (one per row of ``source``): what
    :func:`record` writes, with the position the audit model computes (the sealers are told by
    :func:`mark_recorded`)."""
    a = AuditEvent.__table__.c
    rows = select(
        tenant,
        bindparam("au_id", type_=a.id.type),
        NextPosition(),
        now,
        bindparam("au_actor_type", type_=a.actor_type.type),
        bindparam("au_actor_id", type_=a.actor_id.type),
        literal("code.redeemed", a.action.type),
        literal("code", a.object_type.type),
        bindparam("au_object_id", type_=a.object_id.type),
        bindparam("au_data", type_=a.data.type),
        now,
    ).select_from(source)
    columns = ["tenant_id", "id", "txid", "occurred_at", "actor_type", "actor_id", "action", "object_type"]
    written = insert(AuditEvent.__table__).from_select([*columns, "object_id", "data", "created_at"], rows)
    return written.cte("audit")


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
    the code has holders), the redemption row with its event (one statement on PostgreSQL, which for a
    single-use code nobody holds also carries the conditional write), then the audit record.
    """
    subject = risk_subject(caller, data.terminal)
    async with guard(session, kernel.settings, "redeem", subject):
        now = utcnow()
        store_id, store = await resolve_place(session, data, caller.user_id if caller.clerk else None)
        data = msgspec.structs.replace(data, store_id=store_id, store=store)
        code = (await check(session, kernel, data, subject, now, redeeming=True)).code
        postgres = dialect_of(session) == "postgresql"
        if postgres and code.kind == "code" and code.holder_grant_id is None:
            red = _redemption(code, data, caller, _Use(consumed=True), None, None, now)
            facts = redemption_facts(red)
            if not await _write(session, red, facts, now, won=True):
                raise await _lost(session, code)
        else:
            red, facts = await _consume_and_write(session, code, data, caller, now, postgres)
        if not postgres:  # on PostgreSQL the audit event is written with the redemption
            record(session, "code.redeemed", "code", code.id, facts)
        for follow in extensions(CODE_REDEEMED):  # e.g. a channel that sold the code is told
            await follow(session, code.id, facts)
        await session.flush()
    window = code.rollback_window
    return red, DEFAULT_ROLLBACK_WINDOW_MINUTES if window is None else int(window)


async def _consume_and_write(
    session: AsyncSession, code: Row[Any], data: RedeemIn, caller: Caller, now: dt.datetime, postgres: bool
) -> tuple[Redemption, dict[str, Any]]:
    """Every other redemption: the conditional write, the held item, the redemption row (with its event),
    the ledger of a stored-value card and the grant's status."""
    locked = None
    if code.holder_grant_id is not None:
        # the grant's lock comes first, as in a void: the two never wait on each other in a circle
        locked = await lock_grant(session, code.holder_grant_id)
    use = await _consume(session, code, data, now)
    holder_id, holder_member_id, used_grant = await _holder(session, code, data, use.consumed, now)
    red = _redemption(code, data, caller, use, holder_id, holder_member_id, now)
    facts = redemption_facts(red)
    if postgres:
        await _write(session, red, facts, now, won=False)
    else:
        connection = await hot_connection(session)
        values = {name: getattr(red, name) for name in _RECORD_COLUMNS}
        await connection.execute(
            _REDEMPTIONS.insert(), {**values, "tenant_id": red.tenant_id, "created_at": now}
        )
        emit(session, "code.redeemed", code.id, facts)
    if code.kind == "stored_value":
        await _insert_ledger(session, code, data, red, use, now)
    if used_grant is not None:  # after the redemption row: a partly spent card counts as used
        await sync_grant(session, used_grant, "redeem", locked=locked)
    return red, facts


async def _write(
    session: AsyncSession, red: Redemption, facts: dict[str, Any], now: dt.datetime, *, won: bool
) -> bool:
    """Run :func:`_record_stmt`; False when ``won`` and the code was no longer issued."""
    params = {f"r_{name}": getattr(red, name) for name in _RECORD_COLUMNS}
    params |= {"b_tenant": red.tenant_id, "b_now": now, **event_params("code.redeemed", red.code_id, facts)}
    if won:
        params |= {"b_code_id": red.code_id, "b_old": "issued", "b_new": "redeemed"}
    who = current_actor()
    params |= {"au_id": new_id(), "au_actor_type": who.type, "au_actor_id": who.id}
    params |= {"au_object_id": str(red.code_id), "au_data": msgspec.to_builtins(facts)}
    mark_recorded(session, red.tenant_id)
    connection = await hot_connection(session)
    return (await connection.execute(_record_stmt(won), params)).first() is not None


async def _lost(session: AsyncSession, code: Row[Any]) -> Exception:
    """Why the conditional write of a single-use code matched nothing: redeemed first, voided or expired."""
    state = await session.scalar(select(Code.state).where(Code.id == code.id))
    if state == "redeemed":
        return await refusals.already_redeemed(session, code.id)
    return refusals.voided() if state == "voided" else refusals.expired(code.expires_at)


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
            raise await _lost(session, code)
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


def _redemption(
    code: Row[Any],
    data: RedeemIn,
    caller: Caller,
    use: _Use,
    holder_id: uuid.UUID | None,
    holder_member_id: uuid.UUID | None,
    now: dt.datetime,
) -> Redemption:
    """The redemption row to write (not in the session: it is written with Core)."""
    return Redemption(
        tenant_id=require_tenant(),
        id=new_id(),
        code_id=code.id,
        product_id=code.product_id,
        kind=code.kind,
        code_last4=code.last4,
        grant_item_id=holder_id,
        member_id=holder_member_id,
        store=data.store.strip(),
        store_id=data.store_id,
        terminal=data.terminal.strip(),
        reference=(data.reference or "").strip() or None,
        amount=data.amount,
        currency=code.currency,
        balance_after=use.balance_after,
        use_number=use.use_number,
        user_id=caller.user_id,
        client_id=caller.client_id,
        status="redeemed",
        rolled_back_at=None,
        rollback_reason=None,
        created_at=now,
    )


async def _insert_ledger(
    session: AsyncSession, code: Row[Any], data: RedeemIn, red: Redemption, use: _Use, now: dt.datetime
) -> None:
    """A stored-value card's ledger rows: the opening balance when this use opened the account, the spend."""
    tenant = require_tenant()
    entries: list[dict[str, Any]] = []
    if use.opened:
        entries.append(
            {
                "tenant_id": tenant,
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
            "tenant_id": tenant,
            "id": new_id(),
            "code_id": code.id,
            "redemption_id": red.id,
            "kind": "redeem",
            "delta": -int(data.amount or 0),
            "balance_after": int(use.balance_after or 0),
            "created_at": now,
        }
    )
    connection = await hot_connection(session)
    await connection.execute(_LEDGER.insert(), entries)
