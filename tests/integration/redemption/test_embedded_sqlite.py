"""Embedded mode (SQLite, one process): a transaction that reads inside a savepoint and then writes queues
for the write lock instead of failing with "database is locked" when another connection (the audit sealer,
the in-process worker) writes meanwhile; a released savepoint rolls back with its transaction; and
redemptions racing the sealer all land. (The engine set-up is in ``core/db/session.py``.)"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from core.db.context import tenant_context
from core.redemption.records import get_settings, update_settings
from tests.integration.redemption.helpers import issued_codes


@pytest.fixture
def sqlite_only(test_env: Any) -> None:
    if test_env.backend != "sqlite":
        pytest.skip("SQLite locking")


async def _window(kernel: Any, tenant_id: Any) -> int:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return (await get_settings(db)).rollback_window_minutes


async def test_read_in_a_savepoint_then_write_waits_for_another_writer(sqlite_only, kernel, make_tenant):
    a, b = await make_tenant(), await make_tenant()
    other_started = asyncio.Event()

    async def other_writer() -> None:
        with tenant_context(b.id):
            other_started.set()
            async with kernel.db.transaction() as db:
                await update_settings(db, 11)

    with tenant_context(a.id):
        async with kernel.db.transaction() as db, db.begin_nested():
            assert (await get_settings(db)).rollback_window_minutes == 30  # a read
            other = asyncio.create_task(other_writer())
            await other_started.wait()
            await asyncio.sleep(0.3)  # the other connection writes now (or queues behind us)
            await update_settings(db, 7)  # then this transaction writes
    await asyncio.wait_for(other, 15)
    assert await _window(kernel, a.id) == 7 and await _window(kernel, b.id) == 11


async def test_a_released_savepoint_rolls_back_with_its_transaction(sqlite_only, kernel, make_tenant):
    t = await make_tenant()

    class Abandon(Exception):
        """Raised to roll the outer transaction back."""

    with tenant_context(t.id), pytest.raises(Abandon):
        async with kernel.db.transaction() as db:
            async with db.begin_nested():
                await update_settings(db, 9)
            raise Abandon
    assert await _window(kernel, t.id) == 30


async def test_embedded_redemptions_racing_the_sealer_all_land(
    sqlite_only, client, kernel, make_tenant, make_api_client
):
    t = await make_tenant()
    api = await make_api_client(t, ["redemptions:read", "redemptions:write"])
    iss = await issued_codes(kernel, t.id, 40, with_pin=False)
    answers = await asyncio.gather(
        *[
            client.post("/api/v1/redemptions", json={"code": n, "terminal": f"T{i}"}, headers=api.headers)
            for i, n in enumerate(iss.numbers)
        ]
    )
    assert Counter(r.status_code for r in answers) == {201: 40}, [
        r.text for r in answers if r.status_code != 201
    ]
    listed = (await client.get("/api/v1/redemptions?limit=100", headers=api.headers)).json()["items"]
    assert len(listed) == 40
