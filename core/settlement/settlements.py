"""Settlements per channel account and period: live totals from the split ledger, and the status machine.

``open`` → ``reconciled`` (by reconciliation, :func:`mark_reconciled`) → ``confirmed`` (a person:
:func:`confirm`; totals are frozen and the ledger period is locked, so later rows land in the next period)
→ ``paid`` (a person, with the payment reference: :func:`pay`). A ``reconciled`` settlement goes back to
``open`` when a later run finds open items. Confirming an ``open`` settlement is refused unless forced with
a reason (recorded in the audit trail). Figures: see :class:`core.settlement.settlement_schemas.Totals`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.context import current_actor
from core.audit.services import record
from core.connectors.models import ConnectorAccount
from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.session import get_scoped
from core.errors import Conflict, FieldError, NotFound, ValidationFailed
from core.events.services import emit
from core.settlement.models import SETTLEMENT_STATUSES, ReconItem, Settlement
from core.settlement.settlement_schemas import AccountBalance, SettlementOut, SettlementPage, Totals
from core.splits.ledger import check_period as ledger_check_period
from core.splits.ledger import lock_period, period_of, tenant_zone
from core.splits.models import SplitEntry
from tenants.models import User

__all__ = [
    "CHARGING_EVENTS",
    "REFUND_EVENTS",
    "account_of",
    "balances",
    "channel_accounts",
    "check_period",
    "confirm",
    "get_settlement",
    "list_settlements",
    "live_totals",
    "mark_reconciled",
    "pay",
    "settlement_row",
    "totals_columns",
]

MAX_PAGE = 200
#: Events whose non-tenant rows are commission (refunds give their share back, so they count too).
CHARGING_EVENTS = ("sale", "redemption", "redemption_rollback", "refund", "cancellation")
REFUND_EVENTS = ("refund", "cancellation")


def check_period(period: str) -> str:
    """``YYYY-MM`` or ``422 settlement_period_invalid``."""
    return ledger_check_period(period, "settlement_period_invalid")


async def account_of(session: AsyncSession, account_id: uuid.UUID) -> ConnectorAccount:
    """The tenant's sales-channel account, or ``404 settlement_account_not_found``."""
    account = await get_scoped(session, ConnectorAccount, account_id)
    if account is None or account.kind != "sales_channel":
        raise NotFound("Channel account not found", "渠道账号不存在", code="settlement_account_not_found")
    return account


async def channel_accounts(session: AsyncSession) -> list[tuple[uuid.UUID, str, str]]:
    """The tenant's sales-channel accounts: (id, name, connector id), by name."""
    rows = await session.execute(
        select(ConnectorAccount.id, ConnectorAccount.name, ConnectorAccount.connector_id)
        .where(ConnectorAccount.kind == "sales_channel").order_by(ConnectorAccount.name)
    )
    return [(r.id, r.name, r.connector_id) for r in rows]


def _sum(cond: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((cond, SplitEntry.amount_fen), else_=0)), 0)


def totals_columns() -> tuple[ColumnElement[Any], ...]:
    """The aggregate columns of :class:`Totals` over ``split_entries`` (labels gross, commission, refunds,
    adjustments, net)."""
    e = SplitEntry
    return (
        _sum(e.event == "sale").label("gross"),
        _sum(and_(e.party != "tenant", e.event.in_(CHARGING_EVENTS))).label("commission"),
        (literal(0) - _sum(e.event.in_(REFUND_EVENTS))).label("refunds"),
        _sum(and_(e.event == "adjustment", e.party == "tenant")).label("adjustments"),
        _sum(e.party == "tenant").label("net"),
    )


def _totals(row: Any) -> Totals:
    if row is None:
        return Totals()
    return Totals(gross_fen=int(row.gross), commission_fen=int(row.commission), refunds_fen=int(row.refunds),
                  adjustments_fen=int(row.adjustments), net_due_fen=int(row.net))


async def live_totals(session: AsyncSession, account_id: uuid.UUID, period: str) -> Totals:
    """The period's totals summed from its ledger rows now."""
    row = (await session.execute(
        select(*totals_columns()).where(SplitEntry.tenant_id == require_tenant(),
                                        SplitEntry.account_id == account_id, SplitEntry.period == period)
    )).one_or_none()
    return _totals(row)


async def _parties(session: AsyncSession, account_id: uuid.UUID, period: str) -> dict[str, int]:
    rows = await session.execute(
        select(SplitEntry.party, func.sum(SplitEntry.amount_fen))
        .where(SplitEntry.tenant_id == require_tenant(), SplitEntry.account_id == account_id,
               SplitEntry.period == period)
        .group_by(SplitEntry.party)
    )
    return {party: int(total or 0) for party, total in rows}


def _frozen(s: Settlement) -> Totals:
    return Totals(gross_fen=s.gross_fen, commission_fen=s.commission_fen, refunds_fen=s.refunds_fen,
                  adjustments_fen=s.adjustments_fen, net_due_fen=s.net_due_fen)


def _out(account: tuple[str, str], account_id: uuid.UUID, period: str, s: Settlement | None,
         totals: Totals) -> SettlementOut:
    status = s.status if s is not None else "open"
    out = SettlementOut(id=s.id if s else None, account_id=account_id, account_name=account[0],
                        connector_id=account[1], period=period, status=status,
                        live=status not in ("confirmed", "paid"), totals=totals)
    if s is not None:
        out.last_run_id, out.payment_ref = s.last_run_id, s.payment_ref
        out.reconciled_at, out.confirmed_at, out.confirmed_by, out.paid_at = (
            s.reconciled_at, s.confirmed_at, s.confirmed_by, s.paid_at)
    return out


async def _open_items(session: AsyncSession, run_id: uuid.UUID | None) -> int | None:
    if run_id is None:
        return None
    return int(await session.scalar(
        select(func.count()).select_from(ReconItem).where(ReconItem.run_id == run_id, ReconItem.status == "open")
    ) or 0)


async def _find(session: AsyncSession, account_id: uuid.UUID, period: str) -> Settlement | None:
    return (await session.execute(
        select(Settlement).where(Settlement.account_id == account_id, Settlement.period == period)
    )).scalar_one_or_none()


async def get_settlement(session: AsyncSession, account_id: uuid.UUID, period: str) -> SettlementOut:
    """One settlement (``open`` with live totals even before its row exists), with each party's rows."""
    check_period(period)
    account = await account_of(session, account_id)
    s = await _find(session, account_id, period)
    frozen = s is not None and s.status in ("confirmed", "paid")
    totals = _frozen(s) if frozen and s is not None else await live_totals(session, account_id, period)
    out = _out((account.name, account.connector_id), account_id, period, s, totals)
    out.parties = await _parties(session, account_id, period)
    out.open_items = await _open_items(session, s.last_run_id if s else None)
    return out


def _cursor(text: str | None) -> tuple[str, uuid.UUID] | None:
    if not text:
        return None
    period, _, account = text.partition("~")
    try:
        return check_period(period), uuid.UUID(account)
    except (ValueError, ValidationFailed):
        raise ValidationFailed("Bad cursor", "游标无效", code="bad_cursor",
                               errors=[FieldError(field="cursor", message="invalid")]) from None


async def list_settlements(
    session: AsyncSession,
    *,
    account_id: uuid.UUID | None = None,
    status: str | None = None,
    period: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> SettlementPage:
    """Settlements newest period first: every (account, period) with ledger rows or a settlement row."""
    if status is not None and status not in SETTLEMENT_STATUSES:
        raise ValidationFailed(f"Unknown status {status[:20]!r}", f"未知的状态 {status[:20]!r}",
                               errors=[FieldError(field="status", message="unknown", code="unknown")])
    if period is not None:
        check_period(period)
    after = _cursor(cursor)
    tid = require_tenant()
    keys = union(
        select(SplitEntry.account_id.label("account_id"), SplitEntry.period.label("period"))
        .where(SplitEntry.tenant_id == tid).group_by(SplitEntry.account_id, SplitEntry.period),
        select(Settlement.account_id.label("account_id"), Settlement.period.label("period"))
        .where(Settlement.tenant_id == tid),
    ).subquery()
    stmt = select(keys.c.account_id, keys.c.period, Settlement).outerjoin(
        Settlement, and_(Settlement.tenant_id == tid, Settlement.account_id == keys.c.account_id,
                         Settlement.period == keys.c.period))
    if account_id is not None:
        stmt = stmt.where(keys.c.account_id == account_id)
    if period is not None:
        stmt = stmt.where(keys.c.period == period)
    if status is not None:
        stmt = stmt.where(func.coalesce(Settlement.status, "open") == status)
    if after is not None:
        stmt = stmt.where(or_(keys.c.period < after[0], and_(keys.c.period == after[0], keys.c.account_id > after[1])))
    limit = max(1, min(limit, MAX_PAGE))
    rows = (await session.execute(stmt.order_by(keys.c.period.desc(), keys.c.account_id).limit(limit + 1))).all()
    more, rows = len(rows) > limit, rows[:limit]
    accounts = {a: (name, connector) for a, name, connector in await channel_accounts(session)}
    live = await _live_many(session, [(r.account_id, r.period) for r in rows
                                      if r.Settlement is None or r.Settlement.status in ("open", "reconciled")])
    items = []
    for r in rows:
        s: Settlement | None = r.Settlement
        frozen = s is not None and s.status in ("confirmed", "paid")
        totals = _frozen(s) if frozen and s is not None else live.get((r.account_id, r.period), Totals())
        items.append(_out(accounts.get(r.account_id, ("", "")), r.account_id, r.period, s, totals))
    last = items[-1] if items and more else None
    return SettlementPage(items, f"{last.period}~{last.account_id}" if last else None)


async def _live_many(session: AsyncSession, keys: Sequence[tuple[uuid.UUID, str]]) -> dict[tuple[uuid.UUID, str], Totals]:
    if not keys:
        return {}
    wanted = set(keys)
    rows = await session.execute(
        select(SplitEntry.account_id, SplitEntry.period, *totals_columns())
        .where(SplitEntry.tenant_id == require_tenant(),
               SplitEntry.account_id.in_({k[0] for k in keys}), SplitEntry.period.in_({k[1] for k in keys}))
        .group_by(SplitEntry.account_id, SplitEntry.period)
    )
    return {(r.account_id, r.period): _totals(r) for r in rows if (r.account_id, r.period) in wanted}


async def _by(session: AsyncSession) -> str:
    """Who acts, as people read it: a console user's email, else ``<type>:<id>`` (an API client, a job)."""
    actor = current_actor()
    if actor.type == "user":
        try:
            email = await session.scalar(select(User.email).where(User.id == uuid.UUID(actor.id)))
        except ValueError:
            email = None
        if email:
            return str(email)[:200]
    return f"{actor.type}:{actor.id}"[:200]


async def settlement_row(session: AsyncSession, account_id: uuid.UUID, period: str, *, lock: bool = False) -> Settlement:
    """The settlement of an account's period, created ``open`` the first time it is asked for."""
    query = select(Settlement).where(Settlement.account_id == account_id, Settlement.period == period)
    found = (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()
    if found is None:
        async with session.begin_nested():
            session.add(Settlement(account_id=account_id, period=period, status="open", updated_at=utcnow()))
        found = (await session.execute(query.with_for_update() if lock else query)).scalar_one()
    return found


async def mark_reconciled(
    session: AsyncSession, account_id: uuid.UUID, period: str, run_id: uuid.UUID, open_items: int
) -> Settlement:
    """Tell the period's settlement what its latest reconciliation run found.

    With no open item an ``open`` settlement becomes ``reconciled`` and ``settlement.ready`` is raised; with
    open items a ``reconciled`` one goes back to ``open``. A ``confirmed`` or ``paid`` settlement is locked
    and keeps its status (later differences belong to the next period).
    """
    s = await settlement_row(session, account_id, period, lock=True)
    s.last_run_id = run_id
    now = utcnow()
    if s.status in ("confirmed", "paid"):
        return s
    facts = {"account_id": str(account_id), "period": period, "run_id": str(run_id), "open_items": open_items}
    if open_items == 0 and s.status == "open":
        s.status, s.reconciled_at, s.updated_at = "reconciled", now, now
        record(session, "settlement.reconciled", "settlement", s.id, facts)
        emit(session, "settlement.ready", s.id, facts)
    elif open_items > 0 and s.status == "reconciled":
        s.status, s.reconciled_at, s.updated_at = "open", None, now
        record(session, "settlement.reopened", "settlement", s.id, facts)
    await session.flush()
    return s


async def confirm(session: AsyncSession, account_id: uuid.UUID, period: str, *, force: bool = False,
                  reason: str = "") -> SettlementOut:
    """Confirm a settlement: freeze its totals and lock its ledger period.

    ``409 settlement_period_not_over`` (the month has not ended in the tenant's zone),
    ``409 settlement_already_confirmed``, ``409 settlement_not_reconciled`` (status ``open``: reconcile
    first, or ``force`` with a ``reason``), ``422 settlement_reason_required``.
    """
    check_period(period)
    await account_of(session, account_id)
    reason = reason.strip()
    zone = await tenant_zone(session)
    if period >= period_of(utcnow(), zone):
        raise Conflict(f"The period {period} has not ended yet: it can be confirmed from next month",
                       f"期间 {period} 尚未结束，下个月起才能确认", code="settlement_period_not_over")
    s = await settlement_row(session, account_id, period, lock=True)
    if s.status in ("confirmed", "paid"):
        raise Conflict(f"The settlement of {period} is already {s.status}", f"{period} 的结算已确认",
                       code="settlement_already_confirmed")
    open_items = await _open_items(session, s.last_run_id)
    if s.status == "open" and not force:
        en = (f"{open_items} reconciliation items are still open: resolve them, or confirm anyway with a reason"
              if open_items else "This period has not been reconciled: reconcile it, or confirm anyway with a reason")
        zh = (f"仍有 {open_items} 条对账差异未处理：请先处理，或填写原因后强制确认"
              if open_items else "该期间尚未对账：请先对账，或填写原因后强制确认")
        raise Conflict(en, zh, code="settlement_not_reconciled", extra={"open_items": open_items or 0})
    if s.status == "open" and not reason:
        raise ValidationFailed("A reason is required to confirm a period that is not reconciled",
                               "强制确认未对账的期间必须填写原因", code="settlement_reason_required",
                               errors=[FieldError(field="reason", message="required", code="required")])
    by = await _by(session)
    await lock_period(session, account_id, period, by)
    totals = await live_totals(session, account_id, period)
    now = utcnow()
    s.gross_fen, s.commission_fen, s.refunds_fen = totals.gross_fen, totals.commission_fen, totals.refunds_fen
    s.adjustments_fen, s.net_due_fen = totals.adjustments_fen, totals.net_due_fen
    forced = s.status == "open"
    s.status, s.confirmed_at, s.confirmed_by, s.updated_at = "confirmed", now, by, now
    record(session, "settlement.confirmed", "settlement", s.id, {
        "account_id": str(account_id), "period": period, "forced": forced, "reason": reason[:500],
        "open_items": open_items, **msgspec.to_builtins(totals),
    })
    await session.flush()
    return await get_settlement(session, account_id, period)


async def pay(session: AsyncSession, account_id: uuid.UUID, period: str, payment_ref: str,
              paid_at: dt.datetime | None = None) -> SettlementOut:
    """Record the channel's payment of a ``confirmed`` settlement.

    ``422 settlement_payment_ref_required``, ``422 settlement_paid_at_future``,
    ``409 settlement_not_confirmed``, ``409 settlement_already_paid``.
    """
    check_period(period)
    await account_of(session, account_id)
    ref = payment_ref.strip()
    if not ref or len(ref) > 100:
        raise ValidationFailed("A payment reference (1 to 100 characters) is required", "必须填写付款凭证号（1–100 个字符）",
                               code="settlement_payment_ref_required",
                               errors=[FieldError(field="payment_ref", message="required", code="required")])
    now = utcnow()
    if paid_at is not None and paid_at > now + dt.timedelta(minutes=5):
        raise ValidationFailed("The payment date is in the future", "付款时间不能晚于现在",
                               code="settlement_paid_at_future",
                               errors=[FieldError(field="paid_at", message="in the future")])
    s = await settlement_row(session, account_id, period, lock=True)
    if s.status == "paid":
        raise Conflict(f"The settlement of {period} is already paid ({s.payment_ref})",
                       f"{period} 的结算已付款（{s.payment_ref}）", code="settlement_already_paid")
    if s.status != "confirmed":
        raise Conflict("Only a confirmed settlement can be marked paid: confirm it first",
                       "只有已确认的结算才能标记为已付款，请先确认", code="settlement_not_confirmed")
    s.status, s.payment_ref, s.paid_at, s.updated_at = "paid", ref, paid_at or now, now
    record(session, "settlement.paid", "settlement", s.id,
           {"account_id": str(account_id), "period": period, "payment_ref": ref, "net_due_fen": s.net_due_fen})
    await session.flush()
    return await get_settlement(session, account_id, period)


async def balances(session: AsyncSession, account_id: uuid.UUID | None = None) -> list[AccountBalance]:
    """Per channel account: net due of unconfirmed periods (live), of confirmed unpaid and of paid ones."""
    tid = require_tenant()
    out = {a: AccountBalance(account_id=a, account_name=name, connector_id=connector)
           for a, name, connector in await channel_accounts(session) if account_id in (None, a)}
    frozen = select(Settlement.account_id, Settlement.period).where(
        Settlement.tenant_id == tid, Settlement.status.in_(("confirmed", "paid")))
    live = (
        select(SplitEntry.account_id, SplitEntry.period, _sum(SplitEntry.party == "tenant").label("net"))
        .where(SplitEntry.tenant_id == tid, SplitEntry.account_id.in_(list(out)))
        .group_by(SplitEntry.account_id, SplitEntry.period)
    )
    closed = {(r.account_id, r.period) for r in await session.execute(frozen)}
    for r in await session.execute(live):
        if (r.account_id, r.period) not in closed:
            out[r.account_id].open_fen += int(r.net)
            out[r.account_id].open_periods += 1
    rows = await session.execute(
        select(Settlement.account_id, Settlement.status, func.count(),
               func.coalesce(func.sum(Settlement.net_due_fen), 0))
        .where(Settlement.tenant_id == tid, Settlement.status.in_(("confirmed", "paid")),
               Settlement.account_id.in_(list(out)))
        .group_by(Settlement.account_id, Settlement.status)
    )
    for a, status, n, total in rows:
        b = out[a]
        if status == "confirmed":
            b.confirmed_fen, b.confirmed_periods = int(total), int(n)
        else:
            b.paid_fen, b.paid_periods = int(total), int(n)
    return list(out.values())
