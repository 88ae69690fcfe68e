"""Test helpers: a channel account's month of split-ledger rows (two order lines, a redemption, a refund, an
adjustment naming no line), written with :func:`core.splits.ledger.append` as the splits posting does.

Figures of :func:`seed_month` (fen): gross 15,000; commission 1,200; refunds 5,000; adjustments 300;
net due 9,100 (= 15,000 − 1,200 − 5,000 + 300).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from core.channel_orders.models import ChannelOrder, ChannelOrderLine
from core.db.context import tenant_context
from core.splits.ledger import EntryIn, append

EXPECTED = {"gross_fen": 15_000, "commission_fen": 1_200, "refunds_fen": 5_000, "adjustments_fen": 300,
            "net_due_fen": 9_100}


@dataclass
class Month:
    account_id: uuid.UUID
    period: str
    line_ids: list[uuid.UUID]
    order_ids: list[uuid.UUID]


def at(year: int, month: int, day: int = 15) -> dt.datetime:
    return dt.datetime(year, month, day, 4, 0, tzinfo=dt.UTC)


def rows(account_id: uuid.UUID, line: uuid.UUID | None, order: uuid.UUID | None, event: str, ref: str,
         when: dt.datetime, **amounts: int) -> list[EntryIn]:
    return [EntryIn(account_id=account_id, line_id=line, order_id=order, event=event, event_ref=ref, party=party,
                    amount_fen=amount, occurred_at=when, component=f"{event}:{party}")
            for party, amount in amounts.items()]


async def seed_month(kernel: Any, tenant_id: uuid.UUID, account_id: uuid.UUID, year: int = 2026,
                     month: int = 10, prefix: str = "ORD") -> Month:
    """Two orders of one line each in the month, with their ledger rows (see the module's figures)."""
    when = at(year, month)
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            lines, orders = [], []
            for n, (qty, gross) in enumerate(((2, 10_000), (2, 5_000)), start=1):
                order = ChannelOrder(account_id=account_id, channel_order_id=f"{prefix}-{n}", status="fulfilled",
                                     placed_at=when, total_fen=gross)
                db.add(order)
                await db.flush()
                line = ChannelOrderLine(order_id=order.id, account_id=account_id, channel_line_id=f"L{n}",
                                        sku=f"SKU-{n}", quantity=qty, unit_price_fen=gross // qty, gross_fen=gross)
                db.add(line)
                await db.flush()
                lines.append(line.id)
                orders.append(order.id)
            (l1, l2), (o1, o2) = lines, orders
            entries = [
                *rows(account_id, l1, o1, "sale", "sale-1", when, channel=1_000, platform=200, tenant=8_800),
                *rows(account_id, l2, o2, "sale", "sale-2", when, channel=500, tenant=4_500),
                *rows(account_id, l2, o2, "redemption", "red-1", when, channel=100, tenant=-100),
                *rows(account_id, l1, o1, "refund", "ref-1", when, channel=-500, platform=-100, tenant=-4_400),
                *rows(account_id, None, None, "adjustment", "adj-1", when, channel=-300, tenant=300),
            ]
            await append(db, entries)
    return Month(account_id, f"{year:04d}-{month:02d}", lines, orders)
