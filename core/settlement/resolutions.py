"""Resolving a reconciliation item: a person's decision, with a reason, and the adjustment rows it writes.

- ``accept_theirs``: adjustment rows so that our channel and tenant rows follow the statement's figures
  (:func:`theirs_deltas`); for a sale the channel did not report (``missing_theirs``) every party's rows
  of the line are reversed.
- ``accept_ours``: no money moves; the difference is claimed from the channel; the reason says so.
- ``adjustment``: an explicit ``amount_fen`` by which the tenant's net share changes (positive: the channel
  owes the tenant more), the channel's row taking the opposite.

Adjustment rows are written with :func:`core.splits.ledger.append` (``event="adjustment"``,
``event_ref`` = the item's id, ``component`` = the resolution), dated now, so they land in the first
unlocked period. Nothing is deleted; every resolution is audited. When the last open item of the run is
resolved, the period's settlement is told (:func:`mark_reconciled`).
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.channel_orders.models import ChannelOrderLine
from core.db.base import utcnow
from core.errors import Conflict, FieldError, NotFound, ValidationFailed
from core.settlement.models import RESOLUTIONS, ReconItem, ReconRun
from core.settlement.reconcile import run_counts
from core.settlement.settlements import mark_reconciled
from core.splits.ledger import EntryIn, append
from core.splits.models import SplitEntry

__all__ = ["MAX_ADJUSTMENT_FEN", "resolve_item", "theirs_deltas"]

MAX_ADJUSTMENT_FEN = 10**12


def theirs_deltas(item: ReconItem) -> dict[str, int]:
    """What ``accept_theirs`` moves per party (``channel``/``tenant``) for an item that is not ``missing_theirs``.

    ``sale``: the channel's row follows their commission and the tenant absorbs the rest of the gross
    difference; ``refund``: the tenant gives back what they refunded beyond ours; ``commission`` and
    ``adjustment``: the channel takes what they charged beyond ours, from the tenant. A line of theirs we
    do not have (``missing_ours``, ``duplicate``) is taken whole.
    """
    theirs = item.their_amount_fen or 0
    whole = item.klass in ("missing_ours", "duplicate")
    ours = 0 if whole else (item.our_amount_fen or 0)
    delta = theirs - ours
    if item.kind == "sale":
        their_c = item.their_commission_fen or 0
        our_c = 0 if whole else (item.our_commission_fen if item.our_commission_fen is not None else their_c)
        channel = their_c - our_c
        return {"channel": channel, "tenant": delta - channel}
    if item.kind == "refund":
        return {"tenant": -delta}
    return {"channel": delta, "tenant": -delta}


async def _line_balances(session: AsyncSession, line_id: uuid.UUID) -> dict[str, int]:
    rows = await session.execute(
        select(SplitEntry.party, func.sum(SplitEntry.amount_fen)).where(SplitEntry.line_id == line_id)
        .group_by(SplitEntry.party)
    )
    return {party: int(total or 0) for party, total in rows.all()}


def _check(resolution: str, reason: str, amount_fen: int | None) -> str:
    errors: list[FieldError] = []
    if resolution not in RESOLUTIONS:
        errors.append(FieldError(field="resolution", message=f"one of {', '.join(RESOLUTIONS)}", code="unknown"))
    reason = (reason or "").strip()
    if not reason:
        errors.append(FieldError(field="reason", message="required", code="required"))
    elif len(reason) > 500:
        errors.append(FieldError(field="reason", message="at most 500 characters", code="too_long"))
    if resolution == "adjustment":
        if amount_fen is None or amount_fen == 0:
            errors.append(FieldError(field="amount_fen", message="a non-zero amount in fen", code="required"))
        elif abs(amount_fen) > MAX_ADJUSTMENT_FEN:
            errors.append(FieldError(field="amount_fen", message="too large", code="out_of_range"))
    elif amount_fen is not None:
        errors.append(FieldError(field="amount_fen", message="only for an adjustment", code="not_allowed"))
    if errors:
        raise ValidationFailed("The resolution is incomplete: " + "; ".join(f"{e.field} {e.message}" for e in errors),
                               "处理信息不完整：" + "；".join(f"{e.field} {e.message}" for e in errors),
                               code="resolution_invalid", errors=errors)
    return reason


async def resolve_item(session: AsyncSession, item_id: uuid.UUID, resolution: str, reason: str,
                       amount_fen: int | None = None, *, by: str) -> ReconItem:
    """Resolve an open item of the latest run of its period (see the module docstring).

    ``404 recon_item_not_found``; ``409 recon_item_not_open`` (matched or already resolved);
    ``409 recon_run_superseded`` (a later run of the period exists: resolve its item);
    ``422 resolution_invalid`` (unknown resolution, no reason, amount missing or not allowed).
    """
    reason = _check(resolution, reason, amount_fen)
    item = (await session.execute(select(ReconItem).where(ReconItem.id == item_id).with_for_update())).scalar_one_or_none()
    if item is None:
        raise NotFound("Reconciliation item not found", "对账条目不存在", code="recon_item_not_found")
    if item.status != "open":
        raise Conflict("This item is not open (matched or already resolved)", "该条目无需处理或已处理",
                       code="recon_item_not_open")
    latest = await session.scalar(
        select(ReconRun.id).where(ReconRun.account_id == item.account_id, ReconRun.period == item.period)
        .order_by(ReconRun.started_at.desc(), ReconRun.id.desc()).limit(1))
    if latest != item.run_id:
        raise Conflict("A later reconciliation of this period exists: resolve its items instead",
                       "该期间已有更新的对账结果，请处理新结果中的条目", code="recon_run_superseded")
    deltas: dict[str, int] = {}
    if resolution == "accept_theirs":
        if item.klass == "missing_theirs" and item.order_line_id is not None:
            deltas = {p: -v for p, v in (await _line_balances(session, item.order_line_id)).items()}
        else:
            deltas = theirs_deltas(item)
    elif resolution == "adjustment":
        assert amount_fen is not None  # checked by _check
        deltas = {"tenant": amount_fen, "channel": -amount_fen}
    now = utcnow()
    order_id = None
    if item.order_line_id is not None:
        order_id = await session.scalar(select(ChannelOrderLine.order_id).where(ChannelOrderLine.id == item.order_line_id))
    entries = [
        EntryIn(account_id=item.account_id, event="adjustment", event_ref=str(item.id), party=party,
                amount_fen=amount, occurred_at=now, line_id=item.order_line_id, order_id=order_id,
                component=resolution)
        for party, amount in sorted(deltas.items()) if amount
    ]
    await append(session, entries)
    item.status, item.resolution, item.reason = "resolved", resolution, reason
    item.adjustment_fen = deltas.get("tenant", 0)
    item.resolved_by, item.resolved_at = by[:200], now
    await session.flush()
    record(session, "reconciliation.resolved", "recon_item", item.id, {
        "run_id": str(item.run_id), "class": item.klass, "kind": item.kind, "resolution": resolution,
        "reason": reason, "rows": {p: a for p, a in deltas.items() if a}})
    counts, open_items = await run_counts(session, item.run_id)
    run = await session.get(ReconRun, (item.tenant_id, item.run_id))
    if run is not None:
        run.counts = {**(run.counts or {}), "open": open_items, "resolved": counts["resolved"]}
    if open_items == 0:
        await mark_reconciled(session, item.account_id, item.period, item.run_id, 0)
    return item
