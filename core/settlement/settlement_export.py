"""A settlement's lines (each order line's rows in the period) and its XLSX export.

The lines are summed in SQL per order line; the export streams them from the database in chunks into an
openpyxl write-only workbook (rows go to temporary files, not memory), so a large period stays small.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator
from typing import Any

from openpyxl import Workbook  # type: ignore[import-untyped]  # openpyxl ships no type hints
from openpyxl.cell import WriteOnlyCell  # type: ignore[import-untyped]  # openpyxl ships no type hints
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE  # type: ignore[import-untyped]  # no type hints
from sqlalchemy import ColumnElement, Select, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.channel_orders.models import ChannelOrder, ChannelOrderLine
from core.db.context import require_tenant
from core.settlement.settlement_schemas import SettlementLineOut, SettlementLinePage, SettlementOut
from core.settlement.settlements import CHARGING_EVENTS, REFUND_EVENTS, get_settlement
from core.splits.models import SplitEntry

__all__ = ["export_xlsx", "settlement_lines"]

MAX_PAGE = 500
CHUNK = 2_000
PARTY_COLUMNS = ("channel", "platform", "referrer", "kol", "tenant")


def _sum(cond: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((cond, SplitEntry.amount_fen), else_=0)), 0)


def _sums_select(account_id: uuid.UUID, period: str) -> Select:
    """Each line's sums in the period (one row per ``line_id``; ``None`` gathers rows naming no line)."""
    e = SplitEntry
    shares = [_sum(and_(e.party == p, e.event.in_(CHARGING_EVENTS))).label(p) for p in PARTY_COLUMNS]
    return (
        select(e.line_id.label("line_id"), _sum(e.event == "sale").label("gross"), *shares,
               _sum(e.event.in_(REFUND_EVENTS)).label("refunded"),
               _sum(and_(e.event == "adjustment", e.party == "tenant")).label("adjustments"),
               _sum(e.party == "tenant").label("net"))
        .where(e.tenant_id == require_tenant(), e.account_id == account_id, e.period == period)
        .group_by(e.line_id)
    )


def _line(row: Any, facts: tuple[str, str, str, int], period: str) -> SettlementLineOut:
    order, line, sku, quantity = facts
    return SettlementLineOut(
        line_id=row.line_id, channel_order_id=order, channel_line_id=line, sku=sku, quantity=quantity,
        gross_fen=int(row.gross), channel_fen=int(row.channel), platform_fen=int(row.platform),
        referrer_fen=int(row.referrer), kol_fen=int(row.kol), tenant_fen=int(row.tenant),
        refunds_fen=-int(row.refunded), adjustments_fen=int(row.adjustments), net_due_fen=int(row.net),
        period=period,
    )


async def _chunk(session: AsyncSession, account_id: uuid.UUID, period: str, after: uuid.UUID | None,
                 limit: int) -> list[Any]:
    """Up to ``limit`` lines' sums after ``after`` in line-id order.

    The sums and the lines' facts are read apart (sums by a keyset range, facts by primary key), so no plan
    joins an aggregate of the whole period to the order tables.
    """
    stmt = _sums_select(account_id, period).where(SplitEntry.line_id.is_not(None))
    if after is not None:
        stmt = stmt.where(SplitEntry.line_id > after)
    return list((await session.execute(stmt.order_by(SplitEntry.line_id).limit(limit))).all())


async def _facts(session: AsyncSession, line_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[str, str, str, int]]:
    if not line_ids:
        return {}
    lines = (await session.execute(
        select(ChannelOrderLine.id, ChannelOrderLine.order_id, ChannelOrderLine.channel_line_id,
               ChannelOrderLine.sku, ChannelOrderLine.quantity).where(ChannelOrderLine.id.in_(line_ids))
    )).all()
    orders = dict((await session.execute(
        select(ChannelOrder.id, ChannelOrder.channel_order_id)
        .where(ChannelOrder.id.in_({ln.order_id for ln in lines}))
    )).all()) if lines else {}
    return {ln.id: (orders.get(ln.order_id, ""), ln.channel_line_id, ln.sku, ln.quantity) for ln in lines}


async def _with_facts(session: AsyncSession, rows: list[Any], period: str) -> list[SettlementLineOut]:
    facts = await _facts(session, [r.line_id for r in rows if r.line_id is not None])
    return [_line(r, facts.get(r.line_id, ("", "", "", 0)), period) for r in rows]


async def _loose(session: AsyncSession, account_id: uuid.UUID, period: str) -> list[SettlementLineOut]:
    rows = (await session.execute(_sums_select(account_id, period).where(SplitEntry.line_id.is_(None)))).all()
    return [_line(r, ("", "", "", 0), period) for r in rows]


async def settlement_lines(session: AsyncSession, account_id: uuid.UUID, period: str, *,
                           cursor: uuid.UUID | None = None, limit: int = 100) -> SettlementLinePage:
    """The period's order lines in line-id order (adjustments naming no line come last, ``line_id`` None)."""
    await get_settlement(session, account_id, period)  # 404 / 422 as the settlement itself
    limit = max(1, min(limit, MAX_PAGE))
    rows = await _chunk(session, account_id, period, cursor, limit + 1)
    items = await _with_facts(session, rows[:limit], period)
    more = len(rows) > limit
    if not more:
        items.extend(await _loose(session, account_id, period))
    return SettlementLinePage(items, items[-1].line_id if more else None)


async def _all_lines(session: AsyncSession, account_id: uuid.UUID, period: str) -> AsyncIterator[list[SettlementLineOut]]:
    after: uuid.UUID | None = None
    while True:
        rows = await _chunk(session, account_id, period, after, CHUNK)
        if rows:
            yield await _with_facts(session, rows, period)
        if len(rows) < CHUNK:
            break
        after = rows[-1].line_id
    loose = await _loose(session, account_id, period)
    if loose:
        yield loose


_SUMMARY_HEAD = ("Field / 项目", "Value / 值")
_LINE_HEAD = (
    "Order / 订单号", "Line / 子订单号", "SKU", "Quantity / 数量", "Gross / 销售额", "Channel / 渠道",
    "Platform / 平台", "Referrer / 推荐人", "KOL", "Tenant / 商户", "Refunds / 退款", "Adjustments / 调整",
    "Net due / 应收", "Period / 期间",
)


def _summary_rows(s: SettlementOut) -> list[tuple[Any, ...]]:
    t = s.totals
    rows: list[tuple[Any, ...]] = [
        ("Account / 渠道账号", s.account_name), ("Connector / 渠道", s.connector_id), ("Period / 期间", s.period),
        ("Status / 状态", s.status), ("Live totals / 实时汇总", "yes" if s.live else "no"),
        ("Gross (fen) / 销售额（分）", t.gross_fen), ("Commission (fen) / 佣金（分）", t.commission_fen),
        ("Refunds (fen) / 退款（分）", t.refunds_fen), ("Adjustments (fen) / 调整（分）", t.adjustments_fen),
        ("Net due (fen) / 应收（分）", t.net_due_fen),
        ("Payment reference / 付款凭证", s.payment_ref),
    ]
    for label, when in (("Confirmed at / 确认时间", s.confirmed_at), ("Paid at / 付款时间", s.paid_at)):
        rows.append((label, when.isoformat() if when else ""))
    return rows


def _line_row(ln: SettlementLineOut) -> tuple[Any, ...]:
    return (ln.channel_order_id, ln.channel_line_id, ln.sku, ln.quantity, ln.gross_fen, ln.channel_fen,
            ln.platform_fen, ln.referrer_fen, ln.kol_fen, ln.tenant_fen, ln.refunds_fen, ln.adjustments_fen,
            ln.net_due_fen, ln.period)


def _cell(sheet: Any, value: Any) -> Any:
    """Text as text: characters XLSX cannot hold are dropped (openpyxl refuses them), and a value starting
    with ``=`` (a channel's SKU, a payment reference) stays a string instead of becoming a formula."""
    if not isinstance(value, str):
        return value
    cell = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub("", value))
    cell.data_type = "s"
    return cell


def _append(sheet: Any, rows: list[tuple[Any, ...]]) -> None:
    for row in rows:
        sheet.append([_cell(sheet, v) for v in row])


async def export_xlsx(session: AsyncSession, account_id: uuid.UUID, period: str) -> tuple[str, bytes]:
    """(file name, bytes) of the settlement's workbook: sheet ``Summary``, sheet ``Lines`` (amounts in fen)."""
    s = await get_settlement(session, account_id, period)
    book = Workbook(write_only=True)
    summary = book.create_sheet("Summary")
    summary.append(_SUMMARY_HEAD)
    _append(summary, _summary_rows(s))
    lines = book.create_sheet("Lines")
    lines.append(_LINE_HEAD)
    writing: asyncio.Future[None] | None = None  # the previous chunk is written while the next one is read
    async for chunk in _all_lines(session, account_id, period):
        rows = [_line_row(ln) for ln in chunk]
        if writing is not None:
            await writing
        writing = asyncio.ensure_future(asyncio.to_thread(_append, lines, rows))
    if writing is not None:
        await writing
    with tempfile.TemporaryFile(suffix=".xlsx") as fh:
        await asyncio.to_thread(book.save, fh)
        fh.seek(0)
        body = await asyncio.to_thread(fh.read)
    return f"settlement-{period}-{account_id.hex[:8]}.xlsx", body
