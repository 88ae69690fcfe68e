"""Stored-value accounts opened when stock arrives (the ``inventory.batch_stocked`` extension point).

The inventory stocks a batch; redemption keeps the balances. A stored-value card stocked here has its
opening balance and ``opening`` ledger entry on record before its first spend, in the stocking transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.catalog.models import Product
from core.db.ids import new_id
from core.inventory.models import Code
from core.redemption.models import CodeAccount, LedgerEntry


async def open_balances(
    session: AsyncSession,
    *,
    batch_id: uuid.UUID,
    balance: int,
    currency: str,
    now: dt.datetime,
    chunk: int = 5_000,
) -> int:
    """Open the stored-value account of every code of a new batch: balance = ``balance`` (the product's face
    value), with its ``opening`` ledger entry, in the caller's transaction. Returns how many were opened.

    Redemption takes the balance from the account (``balance - amount WHERE balance >= amount``).
    """
    accounts, ledger = CodeAccount.__table__, LedgerEntry.__table__
    opened, after = 0, None
    while True:
        q = select(Code.id).where(Code.batch_id == batch_id).order_by(Code.id).limit(chunk)
        if after is not None:
            q = q.where(Code.id > after)
        ids = list((await session.execute(q)).scalars())
        if not ids:
            return opened
        await session.execute(
            accounts.insert(),
            [
                {"id": new_id(), "code_id": code_id, "uses": 0, "balance": balance,
                 "initial_balance": balance, "currency": currency, "updated_at": now, "created_at": now}
                for code_id in ids
            ],
        )
        await session.execute(
            ledger.insert(),
            [
                {"id": new_id(), "code_id": code_id, "redemption_id": None,
                 "kind": "opening", "delta": balance, "balance_after": balance, "created_at": now}
                for code_id in ids
            ],
        )
        opened += len(ids)
        after = ids[-1]


async def batch_stocked(session: AsyncSession, product: Product, batch_id: uuid.UUID, now: dt.datetime) -> None:
    """A batch of ``product`` was stocked: open its codes' balances when it is stored value."""
    if product.kind == "stored_value":
        await open_balances(session, batch_id=batch_id, balance=product.face_value, currency=product.currency,
                            now=now)
