"""A small world for reconciliation tests: a channel account, order lines with ledger rows, statements.

Statement lines are inserted directly (as the statements import stores them: once per account and line id),
so these tests do not depend on the file import.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.channel_orders.models import ChannelOrder, ChannelOrderLine
from core.connectors.models import ConnectorAccount
from core.db.context import tenant_context
from core.settlement.models import Statement, StatementLine
from core.splits.ledger import EntryIn, append, period_of

UTC = dt.UTC
#: 10% to the channel at sale, the rest to the tenant.
RULE = {"components": [{"party": "channel", "basis": "sale", "bp": 1000}], "remainder_to": "tenant"}


def at(month: int, day: int = 10, year: int = 2026) -> dt.datetime:
    return dt.datetime(year, month, day, 4, 0, tzinfo=UTC)


@dataclass
class World:
    kernel: Any
    tenant_id: uuid.UUID
    account_id: uuid.UUID
    lines: dict[str, uuid.UUID] = field(default_factory=dict)

    async def account(self, name: str = "Shop") -> uuid.UUID:
        with tenant_context(self.tenant_id):
            async with self.kernel.db.transaction() as db:
                acc = ConnectorAccount(connector_id="sandbox", kind="sales_channel", name=name, config={})
                db.add(acc)
                await db.flush()
                return acc.id

    async def sale(self, order: str, lines: dict[str, int], placed: dt.datetime, *, channel_bp: int = 1000,
                   rule: dict[str, Any] | None = None, post_bp: int | None = None) -> list[uuid.UUID]:
        """An order with lines (channel line id → gross) and its sale rows: ``post_bp`` to the channel."""
        ids = []
        with tenant_context(self.tenant_id):
            async with self.kernel.db.transaction() as db:
                o = ChannelOrder(account_id=self.account_id, channel_order_id=order, status="fulfilled",
                                 placed_at=placed, total_fen=sum(lines.values()))
                db.add(o)
                await db.flush()
                for line_id, gross in lines.items():
                    ln = ChannelOrderLine(order_id=o.id, account_id=self.account_id, channel_line_id=line_id,
                                          sku="SKU", quantity=1, unit_price_fen=gross, gross_fen=gross,
                                          split_rule=rule if rule is not None else {**RULE, "components": [
                                              {"party": "channel", "basis": "sale", "bp": channel_bp}]})
                    db.add(ln)
                    await db.flush()
                    bp = channel_bp if post_bp is None else post_bp
                    await append(db, [
                        EntryIn(account_id=self.account_id, event="sale", event_ref=str(o.id), party="channel",
                                amount_fen=gross * bp // 10_000, occurred_at=placed, line_id=ln.id, order_id=o.id,
                                component="c0"),
                        EntryIn(account_id=self.account_id, event="sale", event_ref=str(o.id), party="tenant",
                                amount_fen=gross - gross * bp // 10_000, occurred_at=placed, line_id=ln.id,
                                order_id=o.id, component="net"),
                    ])
                    self.lines[f"{order}/{line_id}"] = ln.id
                    ids.append(ln.id)
        return ids

    async def rows(self, line: uuid.UUID, event: str, ref: str, parts: dict[str, int], when: dt.datetime) -> None:
        with tenant_context(self.tenant_id):
            async with self.kernel.db.transaction() as db:
                await append(db, [EntryIn(account_id=self.account_id, event=event, event_ref=ref, party=p,
                                          amount_fen=a, occurred_at=when, line_id=line, component="c")
                                  for p, a in parts.items()])

    async def statement(self, lines: list[dict[str, Any]]) -> int:
        """Store statement lines once per (account, line_id), as an import does; the number new."""
        with tenant_context(self.tenant_id):
            async with self.kernel.db.transaction() as db:
                st = Statement(account_id=self.account_id, source="file", status="done", filename="t.csv")
                db.add(st)
                await db.flush()
                return await store_lines(db, self.account_id, st.id, lines)


async def store_lines(db: AsyncSession, account_id: uuid.UUID, statement_id: uuid.UUID,
                      lines: list[dict[str, Any]]) -> int:
    values = []
    for n, line in enumerate(lines, start=1):
        when = line.get("occurred_at", at(3))
        values.append(dict(
            id=uuid.uuid4(), account_id=account_id, statement_id=statement_id, line_id=line["line_id"],
            order_id=line.get("order_id", ""), order_line_id=line.get("order_line_id", ""),
            kind=line.get("kind", "sale"), amount_fen=line["amount_fen"],
            commission_fen=line.get("commission_fen", 0), occurred_at=when,
            period=line.get("period", period_of(when, "Asia/Shanghai")), row_number=n))
    dialect = db.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(StatementLine)
    result = await db.execute(ins.on_conflict_do_nothing(
        index_elements=["tenant_id", "account_id", "line_id"]).returning(StatementLine.id), values)
    return len(result.all())


async def make_world(kernel: Any, tenant_id: uuid.UUID) -> World:
    world = World(kernel, tenant_id, uuid.UUID(int=0))
    world.account_id = await world.account()
    return world


__all__ = ["RULE", "World", "at", "make_world", "store_lines"]
