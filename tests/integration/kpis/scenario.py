"""A seeded consignment scenario with figures worked out by hand (see EXPECTED in test_kpis.py).

Two channel accounts of one tenant. Product P (20 codes at ¥6.00 cost) is listed on shop A, product Q
(10 codes at ¥20.00) on shop B. Orders are written directly (lines, codes, ledger rows) with chosen times;
code states in the inventory follow them (sold codes ``issued``, redeemed ``redeemed``, returned
``available``).

| order | shop | placed | status | gross | codes (state) | ledger rows |
|---|---|---|---|---|---|---|
| A1 | A | 2 days ago | fulfilled | 3000 ×3 | redeemed, delivered, delivered | channel 300, platform 60, tenant 2640 |
| A2 | A | 5 days ago | partially_refunded (1 of 2, ¥10) | 2000 ×2 | returned, delivered | channel 200, tenant 1800; refund −100 / −900 |
| A3 | A | 40 days ago | fulfilled | 1000 ×1 | delivered | channel 100, tenant 900 |
| A4 | A | 3 days ago | refused | 1500 ×1 | — | — |
| A5 | A | 100 days ago | fulfilled | 900 ×1 | delivered | — |
| A6 | A | 200 days ago | fulfilled | 700 ×1 | delivered | — |
| B1 | B | 1 day ago | fulfilled | 5000 ×1 | delivered, expired yesterday | channel 1000, tenant 4000 |

Complaints: two on A1, one on B1.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update

from core.channel_orders.complaints import ComplaintIn, record_complaint
from core.channel_orders.models import ChannelOrder, ChannelOrderCode, ChannelOrderLine
from core.db.base import utcnow
from core.db.context import tenant_context
from core.inventory.models import Code
from core.splits.ledger import EntryIn, append
from tests.integration.channel_orders.fake_channel import ChannelShop, add_listing, connect_account
from tests.integration.inventory.stocking import Stocked, stock_product


@dataclass
class Scenario:
    tenant_id: uuid.UUID
    shop_a: ChannelShop
    shop_b: ChannelShop
    orders: dict[str, uuid.UUID]
    placed: dict[str, dt.datetime]
    now: dt.datetime


# name, shop, days ago, status, gross, quantity, code states, ledger rows (party, amount) of the sale
ORDERS: list[tuple[str, str, float, str, int, int, list[str], list[tuple[str, int]]]] = [
    ("A1", "A", 2, "fulfilled", 3000, 3, ["redeemed", "delivered", "delivered"],
     [("channel", 300), ("platform", 60), ("tenant", 2640)]),
    ("A2", "A", 5, "partially_refunded", 2000, 2, ["returned", "delivered"], [("channel", 200), ("tenant", 1800)]),
    ("A3", "A", 40, "fulfilled", 1000, 1, ["delivered"], [("channel", 100), ("tenant", 900)]),
    ("A4", "A", 3, "refused", 1500, 1, [], []),
    ("A5", "A", 100, "fulfilled", 900, 1, ["delivered"], []),
    ("A6", "A", 200, "fulfilled", 700, 1, ["delivered"], []),
    ("B1", "B", 1, "fulfilled", 5000, 1, ["delivered"], [("channel", 1000), ("tenant", 4000)]),
]
INVENTORY_STATE = {"redeemed": "redeemed", "delivered": "issued", "returned": "available"}


async def seed(kernel: Any, tenant_id: uuid.UUID, *, names: tuple[str, str] = ("Shop A", "Shop B")) -> Scenario:
    """Write the scenario into ``tenant_id`` (see the module docstring)."""
    now = utcnow()
    shop_a = await connect_account(kernel, tenant_id, name=names[0])
    shop_b = await connect_account(kernel, tenant_id, name=names[1])
    p = await stock_product(kernel, tenant_id, 20, unit_cost=600)
    q = await stock_product(kernel, tenant_id, 10, unit_cost=2000)
    listings = {"A": await add_listing(kernel, shop_a, p.product_id, "SKU-P", 5),
                "B": await add_listing(kernel, shop_b, q.product_id, "SKU-Q", 5)}
    stock: dict[str, tuple[ChannelShop, Stocked, list[uuid.UUID]]] = {
        "A": (shop_a, p, list(p.code_ids)), "B": (shop_b, q, list(q.code_ids))}
    orders: dict[str, uuid.UUID] = {}
    placed: dict[str, dt.datetime] = {}
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            for name, shop_key, days, status, gross, qty, states, rows in ORDERS:
                shop, stocked, free = stock[shop_key]
                at = now - dt.timedelta(days=days)
                order = ChannelOrder(account_id=shop.account_id, channel_order_id=name, status=status, placed_at=at,
                                     total_fen=gross, buyer_id=f"buyer-{name}")
                db.add(order)
                await db.flush()
                refunded = states.count("returned")
                line = ChannelOrderLine(order_id=order.id, account_id=shop.account_id, channel_line_id="1",
                                        sku="SKU-" + ("P" if shop_key == "A" else "Q"),
                                        listing_id=listings[shop_key], product_id=stocked.product_id, quantity=qty,
                                        unit_price_fen=gross // qty, gross_fen=gross, refunded_quantity=refunded,
                                        refunded_fen=refunded * (gross // qty))
                db.add(line)
                await db.flush()
                for state in states:
                    code_id = free.pop(0)
                    db.add(ChannelOrderCode(line_id=line.id, code_id=code_id, batch_id=stocked.batch_id,
                                            unit_cost_fen=600 if shop_key == "A" else 2000, state=state,
                                            revealed=state != "returned", delivered_at=at))
                    expired = name == "B1"
                    await db.execute(update(Code).where(Code.id == code_id).values(
                        state=INVENTORY_STATE[state], expires_at=now - dt.timedelta(days=1) if expired else None))
                entries = [EntryIn(account_id=shop.account_id, event="sale", event_ref=name, party=party,
                                   amount_fen=amount, occurred_at=at, line_id=line.id, order_id=order.id,
                                   component=party) for party, amount in rows]
                if name == "A2":
                    entries += [EntryIn(account_id=shop.account_id, event="refund", event_ref="R-A2", party=party,
                                        amount_fen=amount, occurred_at=at, line_id=line.id, order_id=order.id,
                                        component=party) for party, amount in (("channel", -100), ("tenant", -900))]
                await append(db, entries)
                orders[name], placed[name] = order.id, at
            await db.flush()
            for name in ("A1", "A1", "B1"):
                await record_complaint(db, orders[name], ComplaintIn(category="code_invalid", note="不能用"))
    return Scenario(tenant_id, shop_a, shop_b, orders, placed, now)
