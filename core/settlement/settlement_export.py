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


def _lines_select(account_id: uuid.UUID, period: str) -> Select[Any]:
    e = SplitEntry
    shares = [_sum(and_(e.party == p, e.event.in_(CHARGING_EVENTS))).label(p) for p in PARTY_COLUMNS]
    agg = (
        select(e.line_id.label("line_id"), _sum(e.event == "sale").label("gross"), *shares,
               _sum(e.event.in_(REFUND_EVENTS)).label("refunded"),
               _sum(and_(e.event == "adjustment", e.party == "tenant")).label("adjustments"),
               _sum(e.party == "tenant").label("net"))
        .where(e.tenant_id == require_tenant(), e.account_id == account_id, e.period == period)
        .group_by(e.line_id)
    ).subquery()
    tid = require_tenant()
    return (
        select(agg, ChannelOrderLine.channel_line_id, ChannelOrderLine.sku, ChannelOrderLine.quantity,
               ChannelOrder.channel_order_id)
        .select_from(agg)
        .outerjoin(ChannelOrderLine, and_(ChannelOrderLine.tenant_id == tid, ChannelOrderLine.id == agg.c.line_id))
        .outerjoin(ChannelOrder, and_(ChannelOrder.tenant_id == tid, ChannelOrder.id == ChannelOrderLine.order_id))
    )


def _line(row: Any, period: str) -> SettlementLineOut:
    return SettlementLineOut(
        line_id=row.line_id, channel_order_id=row.channel_order_id or "", channel_line_id=row.channel_line_id or "",
        sku=row.sku or "", quantity=int(row.quantity or 0), gross_fen=int(row.gross),
        channel_fen=int(row.channel), platform_fen=int(row.platform), referrer_fen=int(row.referrer),
        kol_fen=int(row.kol), tenant_fen=int(row.tenant), refunds_fen=-int(row.refunded),
        adjustments_fen=int(row.adjustments), net_due_fen=int(row.net), period=period,
    )


async def settlement_lines(session: AsyncSession, account_id: uuid.UUID, period: str, *,
                           cursor: uuid.UUID | None = None, limit: int = 100) -> SettlementLinePage:
    """The period's order lines in line-id order (adjustments naming no line come last, ``line_id`` None)."""
    await get_settlement(session, account_id, period)  # 404 / 422 as the settlement itself
    limit = max(1, min(limit, MAX_PAGE))
    stmt = _lines_select(account_id, period)
    line_id = stmt.selected_columns.line_id
    if cursor is not None:
        stmt = stmt.where(line_id > cursor)
    rows = (await session.execute(stmt.where(line_id.is_not(None)).order_by(line_id).limit(limit + 1))).all()
    items = [_line(r, period) for r in rows[:limit]]
    more = len(rows) > limit
    if not more:
        loose_stmt = _lines_select(account_id, period)
        loose = (await session.execute(loose_stmt.where(loose_stmt.selected_columns.line_id.is_(None)))).all()
        items.extend(_line(r, period) for r in loose)
    return SettlementLinePage(items, items[-1].line_id if more else None)


async def _all_lines(session: AsyncSession, account_id: uuid.UUID, period: str) -> AsyncIterator[list[SettlementLineOut]]:
    stmt = _lines_select(account_id, period)
    cols = stmt.selected_columns
    stmt = stmt.order_by(cols.channel_order_id.is_(None), cols.channel_order_id, cols.channel_line_id, cols.line_id)
    result = await session.stream(stmt.execution_options(yield_per=CHUNK))
    async for chunk in result.partitions(CHUNK):
        yield [_line(r, period) for r in chunk]


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


def _append(sheet: Any, rows: list[tuple[Any, ...]]) -> None:
    for row in rows:
        sheet.append(row)


async def export_xlsx(session: AsyncSession, account_id: uuid.UUID, period: str) -> tuple[str, bytes]:
    """(file name, bytes) of the settlement's workbook: sheet ``Summary``, sheet ``Lines`` (amounts in fen)."""
    s = await get_settlement(session, account_id, period)
    book = Workbook(write_only=True)
    summary = book.create_sheet("Summary")
    summary.append(_SUMMARY_HEAD)
    _append(summary, _summary_rows(s))
    lines = book.create_sheet("Lines")
    lines.append(_LINE_HEAD)
    async for chunk in _all_lines(session, account_id, period):
        await asyncio.to_thread(_append, lines, [_line_row(ln) for ln in chunk])
    with tempfile.TemporaryFile(suffix=".xlsx") as fh:
        await asyncio.to_thread(book.save, fh)
        fh.seek(0)
        body = await asyncio.to_thread(fh.read)
    return f"settlement-{period}-{account_id.hex[:8]}.xlsx", body
