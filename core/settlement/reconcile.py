"""Reconciliation of a channel account's period: its statement lines against our order lines and split rows.

One run is two set-based ``INSERT … SELECT`` into ``recon_items`` (never a statement line in Python), so a
period of a million lines reconciles in the database:

1. every statement line of the period, matched to our order line by ``(account, channel order id, channel
   line id)`` — or, when the line id is empty and the order has a single line, that line — and classified
   (``missing_ours``, ``duplicate``, ``amount_mismatch``, ``rate_differs``, ``matched``);
2. every order line of the account with ``sale`` rows in the period that no ``sale`` statement line of the
   account reports (in any period): ``missing_theirs``.

What "ours" is per statement kind: ``sale`` — the line's ``gross_fen`` (commission: the channel's ``sale``
rows of the line); ``refund`` — what the ``refund``/``cancellation`` rows of the line in the period give
back (all parties, as a positive amount: the ledger rolls a refund after a locked period into the next one,
so a refund is reconciled in the period it lands in); ``commission`` — the channel's
``redemption``/``redemption_rollback`` rows of the line in the period; ``adjustment`` — the channel's
``adjustment`` rows of the line in the period. A second statement line (another ``line_id``) for the same
order line and kind in the period is a ``duplicate``; the first (earliest ``occurred_at``, then
``line_id``) is compared.

A sale whose amount agrees but whose commission differs both from our channel ``sale`` rows and from what
the rule snapshot on the line gives (:func:`snapshot_commission`) is ``rate_differs``. Items resolved in an
earlier run of the period carry their resolution to a new run when nothing about them changed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec
from sqlalchemy import (
    CTE,
    ColumnElement,
    CompoundSelect,
    Select,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.types import Uuid

from core.audit.services import record
from core.channel_orders.models import ChannelOrder, ChannelOrderLine
from core.connectors.models import ConnectorAccount
from core.db.base import UTCDateTime, utcnow
from core.db.context import require_tenant
from core.db.session import get_scoped
from core.errors import NotFound
from core.events.services import emit
from core.settlement.models import RECON_CLASSES, ReconItem, ReconRun, StatementLine
from core.settlement.settlements import mark_reconciled, settlement_row
from core.splits.engine import LineFacts, sale_rows
from core.splits.ledger import check_period
from core.splits.models import SplitEntry
from core.splits.rules import terms_from_snapshot

__all__ = ["check_period", "reconcile", "snapshot_commission"]

_REFUND_EVENTS = ("refund", "cancellation")
#: PostgreSQL ``work_mem`` of a reconciliation's transaction (each hash may use twice that).
WORK_MEM = "64MB"
_REDEMPTION_EVENTS = ("redemption", "redemption_rollback")


def snapshot_commission(rule: Mapping[str, Any] | None, gross_fen: int, *, first_line: bool,
                        attributed: bool) -> int | None:
    """The channel's commission at sale that a line's rule snapshot gives, or ``None`` if it cannot say.

    Computed by the split engine itself (:func:`core.splits.engine.sale_rows`), so reconciliation and the
    ledger never disagree on rounding, bounds or ``remainder_to``. A ``conversion`` component with a
    referral minimum is not counted (the minimum needs the sharer's history, which the snapshot does not
    hold); a legacy ``{"channel_bp": N}`` rule is ``N`` bp of the gross.
    """
    if not rule:
        return None
    try:
        terms = terms_from_snapshot(dict(rule))
    except (msgspec.ValidationError, TypeError, ValueError):
        return None
    if not terms.components:
        return None
    sharer = "snapshot" if attributed else ""
    facts = LineFacts(gross_fen=gross_fen, quantity=1, first_line=first_line, referrer=sharer, kol=sharer)
    return sum(r.amount_fen for r in sale_rows(terms, facts) if r.party == "channel")


def _item_id(dialect: str, run_id: uuid.UUID, offset: int) -> ColumnElement[Any]:
    """A time-ordered id per inserted row, made by the database (an ``INSERT … SELECT`` has no Python hook).

    The run's UUIDv7 time prefix (its first 64 bits) then the row's number: ids grow within a run and from
    run to run, so the primary key and ``ix_recon_items_run`` are appended to, not split at random pages
    (a million random UUIDs cost PostgreSQL about half as much again in index pages and WAL). Two runs of
    one tenant share a prefix only if made in the same millisecond with the same next 12 bits; the second
    then fails on the primary key, writes nothing, and can simply be run again.
    """
    n = func.row_number().over() + offset
    prefix = run_id.hex[:16] + "8"
    if dialect == "postgresql":
        return cast(literal(prefix) + func.lpad(func.to_hex(n), 15, "0"), Uuid())
    return literal(prefix) + func.printf("%015x", n)


_ITEM_COLUMNS = [
    "tenant_id", "id", "created_at", "run_id", "account_id", "period", "klass", "kind", "statement_line_id",
    "order_line_id", "channel_order_id", "channel_line_id", "their_amount_fen", "our_amount_fen", "diff_fen",
    "their_commission_fen", "our_commission_fen", "status", "resolution", "reason", "adjustment_fen", "resolved_by",
]


_UNRESOLVED = (literal(""), literal(""), literal(0), literal(""))


# long: one SQL statement, read best whole
def _items_select(tid: uuid.UUID, account_id: uuid.UUID, period: str, run_id: uuid.UUID,
                  now: dt.datetime, dialect: str) -> CompoundSelect:
    """The SELECT of every item of a run (see the module docstring): statement lines, then missing ones.

    Built for a million lines: the matched lines (``m``) and the period's ledger rows per line (``agg``) are
    each computed once and hash-joined; only the order lines reported more than once are ranked (a window
    over the few duplicates, not a sort of the whole period); a sale's commission outside the period's rows
    (a sale reported a month late) is looked up line by line only when needed.
    """
    sl = StatementLine.__table__.alias("sl")
    co = ChannelOrder.__table__.alias("co")
    l1 = ChannelOrderLine.__table__.alias("l1")
    l2 = ChannelOrderLine.__table__.alias("l2")
    l3 = ChannelOrderLine.__table__.alias("l3")
    se = SplitEntry.__table__.alias("se")
    s2 = SplitEntry.__table__.alias("s2")
    only_line = ~exists().where(l3.c.tenant_id == co.c.tenant_id, l3.c.order_id == co.c.id, l3.c.id != l2.c.id)
    m = (
        select(
            sl.c.id.label("sid"), sl.c.kind, sl.c.line_id.label("their_line"), sl.c.order_id.label("their_order"),
            func.coalesce(l1.c.channel_line_id, l2.c.channel_line_id, sl.c.order_line_id).label("their_order_line"),
            sl.c.amount_fen, sl.c.commission_fen, sl.c.occurred_at,
            func.coalesce(l1.c.id, l2.c.id).label("lid"), func.coalesce(l1.c.gross_fen, l2.c.gross_fen).label("gross"),
        )
        .select_from(
            sl.outerjoin(co, and_(co.c.tenant_id == sl.c.tenant_id, co.c.account_id == sl.c.account_id,
                                  co.c.channel_order_id == sl.c.order_id))
            .outerjoin(l1, and_(l1.c.tenant_id == co.c.tenant_id, l1.c.order_id == co.c.id,
                                sl.c.order_line_id != "", l1.c.channel_line_id == sl.c.order_line_id))
            .outerjoin(l2, and_(sl.c.order_line_id == "", l2.c.tenant_id == co.c.tenant_id,
                                l2.c.order_id == co.c.id, only_line))
        )
        .where(sl.c.tenant_id == tid, sl.c.account_id == account_id, sl.c.period == period)
    ).cte("m")
    groups = (select(m.c.lid, m.c.kind).where(m.c.lid.is_not(None)).group_by(m.c.lid, m.c.kind)
              .having(func.count() > 1).subquery("g"))
    dups = (
        select(m.c.sid, func.row_number().over(partition_by=[m.c.lid, m.c.kind],
                                               order_by=[m.c.occurred_at, m.c.their_line]).label("rn"))
        .select_from(m.join(groups, and_(groups.c.lid == m.c.lid, groups.c.kind == m.c.kind)))
    ).subquery("d")

    def total(cond: ColumnElement[bool], sign: int = 1) -> ColumnElement[Any]:
        return func.sum(case((cond, se.c.amount_fen * sign), else_=0))

    channel = se.c.party == "channel"
    agg = (
        select(
            se.c.line_id,
            func.max(case((se.c.event == "sale", 1), else_=0)).label("sold"),
            total(and_(se.c.event == "sale", channel)).label("sale_channel"),
            total(se.c.event.in_(_REFUND_EVENTS), -1).label("refunded"),
            total(and_(se.c.event.in_(_REDEMPTION_EVENTS), channel)).label("redeemed_channel"),
            total(and_(se.c.event == "adjustment", channel)).label("adjusted_channel"),
        )
        .where(se.c.tenant_id == tid, se.c.account_id == account_id, se.c.period == period,
               se.c.line_id.is_not(None))
        .group_by(se.c.line_id)
    ).cte("agg")
    late_sale = (
        select(func.coalesce(func.sum(s2.c.amount_fen), 0))
        .where(s2.c.tenant_id == tid, s2.c.line_id == m.c.lid, s2.c.event == "sale", s2.c.party == "channel")
        .scalar_subquery()
    )
    rn = func.coalesce(dups.c.rn, 1)
    ours = case(
        (m.c.kind == "sale", m.c.gross),
        (m.c.kind == "refund", func.coalesce(agg.c.refunded, 0)),
        (m.c.kind == "commission", func.coalesce(agg.c.redeemed_channel, 0)),
        else_=func.coalesce(agg.c.adjusted_channel, 0),
    )
    our_commission = case((m.c.kind != "sale", null()), (agg.c.sold == 1, agg.c.sale_channel), else_=late_sale)
    klass = case(
        (m.c.lid.is_(None), "missing_ours"),
        (rn > 1, "duplicate"),
        (m.c.amount_fen != ours, "amount_mismatch"),
        (and_(m.c.kind == "sale", m.c.commission_fen != our_commission), "rate_differs"),
        else_="matched",
    )
    classified = (
        select(m, klass.label("klass"), ours.label("ours"), our_commission.label("our_commission"))
        .select_from(m.outerjoin(agg, agg.c.line_id == m.c.lid).outerjoin(dups, dups.c.sid == m.c.sid))
    ).subquery("c")
    c = classified.c
    compared = c.klass.not_in(("missing_ours", "duplicate"))
    fixed: list[ColumnElement[Any]] = [literal(tid, Uuid()), literal(now, UTCDateTime()), literal(run_id, Uuid()),
             literal(account_id, Uuid()), literal(period)]
    theirs = select(
        fixed[0], _item_id(dialect, run_id, 0), *fixed[1:], c.klass, c.kind, c.sid, c.lid, c.their_order, c.their_order_line, c.amount_fen,
        case((compared, c.ours), else_=null()),
        case((compared, c.amount_fen - c.ours), else_=c.amount_fen),
        case((c.kind.in_(("sale", "refund")), c.commission_fen), else_=null()),
        case((compared, c.our_commission), else_=null()),
        case((c.klass == "matched", "ok"), else_="open"), *_UNRESOLVED,
    )
    missing = _missing_theirs(tid, account_id, period, [fixed[0], _item_id(dialect, run_id, 1 << 40), *fixed[1:]],
                              m, agg)
    return union_all(theirs, missing)


def _missing_theirs(tid: uuid.UUID, account_id: uuid.UUID, period: str, fixed: list[ColumnElement[Any]],
                    m: CTE, agg: CTE) -> Select[Any]:
    """Order lines with sale rows in the period that no sale statement line reports (this period or another)."""
    sl = StatementLine.__table__.alias("sl2")
    line = ChannelOrderLine.__table__.alias("l")
    other = ChannelOrderLine.__table__.alias("o")
    co = ChannelOrder.__table__.alias("co2")
    here = exists().where(m.c.lid == agg.c.line_id, m.c.kind == "sale")
    single = ~exists().where(other.c.tenant_id == line.c.tenant_id, other.c.order_id == line.c.order_id,
                             other.c.id != line.c.id).correlate(line)
    elsewhere = exists().where(
        sl.c.tenant_id == tid, sl.c.account_id == account_id, sl.c.order_id == co.c.channel_order_id,
        sl.c.kind == "sale", sl.c.period != period,
        or_(sl.c.order_line_id == line.c.channel_line_id, and_(sl.c.order_line_id == "", single)),
    ).correlate(line, co)
    return (
        select(
            *fixed, literal("missing_theirs"), literal("sale"), null(), line.c.id, co.c.channel_order_id,
            line.c.channel_line_id, null(), line.c.gross_fen, -line.c.gross_fen, null(), agg.c.sale_channel,
            literal("open"), *_UNRESOLVED,
        )
        .select_from(
            agg.join(line, and_(line.c.tenant_id == tid, line.c.id == agg.c.line_id))
            .join(co, and_(co.c.tenant_id == line.c.tenant_id, co.c.id == line.c.order_id))
        )
        .where(agg.c.sold == 1, ~here, ~elsewhere)
    )


async def _second_chance(session: AsyncSession, run_id: uuid.UUID) -> int:
    """``rate_differs`` items whose commission is what the line's rule snapshot gives become ``matched``."""
    item, line, order = ReconItem, ChannelOrderLine, ChannelOrder
    sibling = aliased(ChannelOrderLine)
    first = ~exists().where(sibling.order_id == line.order_id, sibling.id < line.id).correlate(line)
    rows = await session.stream(
        select(item.id, item.their_commission_fen, line.gross_fen, line.split_rule, first,
               order.referrer, order.kol)
        .join(line, line.id == item.order_line_id).join(order, order.id == line.order_id)
        .where(item.run_id == run_id, item.klass == "rate_differs")
        .execution_options(yield_per=2000)
    )
    agreed: list[uuid.UUID] = []
    async for rid, theirs, gross, rule, is_first, referrer, kol in rows:
        expected = snapshot_commission(rule, int(gross), first_line=bool(is_first), attributed=bool(referrer or kol))
        if expected is not None and expected == theirs:
            agreed.append(rid)
    for start in range(0, len(agreed), 1000):
        await session.execute(
            update(ReconItem).where(ReconItem.id.in_(agreed[start:start + 1000]))
            .values(klass="matched", status="ok").execution_options(synchronize_session=False)
        )
    return len(agreed)


async def _carry_resolutions(session: AsyncSession, run: ReconRun) -> int:
    """Open items of ``run`` identical to an item resolved in an earlier run of the period take its resolution."""
    earlier = [rid for rid, counts in (await session.execute(
        select(ReconRun.id, ReconRun.counts).where(ReconRun.account_id == run.account_id,
                                                   ReconRun.period == run.period, ReconRun.id != run.id)
    )).all() if (counts or {}).get("resolved")]
    if not earlier:  # the common case: nothing resolved before, no join of the run's items
        return 0
    nil = uuid.UUID(int=0)
    cur = ReconItem.__table__.alias("cur")
    prev = ReconItem.__table__.alias("prev")
    tid = require_tenant()
    pairs = (await session.execute(
        select(cur.c.id, prev.c.resolution, prev.c.reason, prev.c.resolved_by, prev.c.resolved_at)
        .select_from(cur.join(prev, and_(
            prev.c.tenant_id == cur.c.tenant_id, prev.c.account_id == cur.c.account_id,
            prev.c.period == cur.c.period, prev.c.klass == cur.c.klass, prev.c.kind == cur.c.kind,
            func.coalesce(prev.c.statement_line_id, nil) == func.coalesce(cur.c.statement_line_id, nil),
            func.coalesce(prev.c.order_line_id, nil) == func.coalesce(cur.c.order_line_id, nil),
        )))
        .where(cur.c.tenant_id == tid, cur.c.run_id == run.id, cur.c.status == "open",
               prev.c.status == "resolved", prev.c.run_id.in_(earlier),
               prev.c.their_amount_fen.is_not_distinct_from(cur.c.their_amount_fen),
               prev.c.our_amount_fen.is_not_distinct_from(cur.c.our_amount_fen),
               prev.c.their_commission_fen.is_not_distinct_from(cur.c.their_commission_fen),
               prev.c.our_commission_fen.is_not_distinct_from(cur.c.our_commission_fen))
        .order_by(prev.c.resolved_at)
    )).all()
    latest = {row[0]: row for row in pairs}
    if latest:
        await session.execute(
            update(ReconItem.__table__)
            .where(ReconItem.__table__.c.tenant_id == tid, ReconItem.__table__.c.id == bindparam("item"))
            .values(status="resolved", resolution=bindparam("res"), reason=bindparam("why"),
                    resolved_by=bindparam("who"), resolved_at=bindparam("at")),
            [{"item": i, "res": r, "why": w, "who": b, "at": a} for i, r, w, b, a in latest.values()],
        )
    return len(latest)


async def run_counts(session: AsyncSession, run_id: uuid.UUID) -> tuple[dict[str, int], int]:
    """Items of a run per class (every class named, zeros included, and ``resolved``), and how many are open."""
    counts = dict.fromkeys(RECON_CLASSES, 0)
    counts["resolved"] = 0
    open_items = 0
    for klass, status, n in (await session.execute(
        select(ReconItem.klass, ReconItem.status, func.count()).where(ReconItem.run_id == run_id)
        .group_by(ReconItem.klass, ReconItem.status)
    )).all():
        counts[klass] = counts.get(klass, 0) + int(n)
        open_items += int(n) if status == "open" else 0
        counts["resolved"] += int(n) if status == "resolved" else 0
    return counts, open_items


async def sales_account(session: AsyncSession, account_id: uuid.UUID) -> ConnectorAccount:
    """The tenant's sales-channel account, or ``404 channel_account_not_found``."""
    account = await get_scoped(session, ConnectorAccount, account_id)
    if account is None or account.kind != "sales_channel":
        raise NotFound("Channel account not found", "渠道账号不存在", code="channel_account_not_found")
    return account


async def reconcile(session: AsyncSession, account_id: uuid.UUID, period: str, by: str) -> ReconRun:
    """Reconcile an account's period: a new :class:`ReconRun` with its items, counts and settlement status.

    Emits ``reconciliation.mismatch`` once (with the counts) when any item is left open, and tells the
    period's settlement (:func:`mark_reconciled`). Runs in the caller's transaction: all or nothing.
    """
    check_period(period)
    await sales_account(session, account_id)
    await settlement_row(session, account_id, period, lock=True)  # one run of a period at a time
    tid = require_tenant()
    now = utcnow()
    run = ReconRun(account_id=account_id, period=period, status="running", started_at=now, started_by=by[:200])
    session.add(run)
    await session.flush()
    dialect = session.get_bind().dialect.name
    table = ReconItem.__table__
    if dialect == "postgresql":
        # For this transaction only: the period's hashes in memory, no JIT compile (seconds, for one
        # statement), and hash joins rather than nested loops — under row-level security the planner
        # estimates one row per table (the policy's bounds are sub-selects) and would otherwise scan the
        # matched lines once per order line sold (quadratic: 50 s for 20,000 lines instead of 1).
        await session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
        await session.execute(text("SET LOCAL jit = off"))
        await session.execute(text("SET LOCAL enable_nestloop = off"))
    await session.execute(insert(table).from_select(
        _ITEM_COLUMNS, _items_select(tid, account_id, period, run.id, now, dialect)))
    if dialect == "postgresql":  # the few look-ups that follow are index look-ups again
        await session.execute(text("SET LOCAL enable_nestloop = on"))
    await _second_chance(session, run.id)
    carried = await _carry_resolutions(session, run)
    counts, open_items = await run_counts(session, run.id)
    run.counts = {**counts, "open": open_items, "carried": carried}
    run.status, run.finished_at = "done", utcnow()
    facts = {"account_id": str(account_id), "period": period, "run_id": str(run.id), "counts": run.counts}
    record(session, "reconciliation.run", "recon_run", run.id, facts)
    if open_items:
        emit(session, "reconciliation.mismatch", run.id, facts)
    await session.flush()
    await mark_reconciled(session, account_id, period, run.id, open_items)
    return run
