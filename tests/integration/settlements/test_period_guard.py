"""A confirmation and a ledger row written at the same moment: the row is either in the confirmed totals
or in the next period, never silently inside a confirmed period (PostgreSQL advisory guard)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from core.db.context import tenant_context
from core.splits.ledger import EntryIn, append, lock_period
from core.splits.models import SplitEntry

AT = dt.datetime(2026, 10, 15, 4, tzinfo=dt.UTC)


def _rows(account_id: Any, ref: str) -> list[EntryIn]:
    return [
        EntryIn(account_id=account_id, event="adjustment", event_ref=ref, party="tenant", amount_fen=500,
                occurred_at=AT, component="guard"),
        EntryIn(account_id=account_id, event="adjustment", event_ref=ref, party="channel", amount_fen=-500,
                occurred_at=AT, component="guard"),
    ]


async def _periods(kernel: Any, tenant_id: Any, ref: str) -> set[str]:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return set((await db.execute(select(SplitEntry.period).where(SplitEntry.event_ref == ref))).scalars())


async def test_a_confirmation_waits_for_rows_being_written_and_later_rows_move_on(
    settings: Any, kernel: Any, seller: Any
) -> None:
    if not settings.is_postgres:
        pytest.skip("SQLite takes one writer at a time (IMMEDIATE transactions): there is no race to guard")
    written = asyncio.Event()
    release = asyncio.Event()
    seen: dict[str, int] = {}

    async def writer() -> None:
        with tenant_context(seller.tenant_id):
            async with kernel.db.transaction() as db:
                assert await append(db, _rows(seller.account_id, "in-flight")) == 2
                written.set()
                await release.wait()  # still uncommitted while the confirmation starts

    async def confirmer() -> None:
        await written.wait()
        with tenant_context(seller.tenant_id):
            async with kernel.db.transaction() as db:
                locking = asyncio.ensure_future(lock_period(db, seller.account_id, "2026-10", "test"))
                await asyncio.sleep(0.3)
                assert not locking.done(), "the confirmation must wait for the row being written"
                release.set()
                await locking
                seen["rows"] = int(await db.scalar(
                    select(func.count()).select_from(SplitEntry)
                    .where(SplitEntry.account_id == seller.account_id, SplitEntry.period == "2026-10")
                ) or 0)

    await asyncio.wait_for(asyncio.gather(writer(), confirmer()), timeout=30)
    assert seen["rows"] == 2  # the in-flight rows are part of what was confirmed
    assert await _periods(kernel, seller.tenant_id, "in-flight") == {"2026-10"}

    with tenant_context(seller.tenant_id):
        async with kernel.db.transaction() as db:
            assert await append(db, _rows(seller.account_id, "after")) == 2
    assert await _periods(kernel, seller.tenant_id, "after") == {"2026-11"}
