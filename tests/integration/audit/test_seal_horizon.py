"""PostgreSQL: a block ends at the horizon (every transaction below it has ended), so a transaction that
commits late never lands in a sealed block; one sealer per tenant at a time, the others return at once."""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar

import pytest
from sqlalchemy import select

from core.audit.models import AuditEvent
from core.audit.sealing import seal_block
from core.audit.services import record, verify_chain
from core.db.context import tenant_context
from tests.integration.audit.helpers import seal, sealer_held_off, seals_of, write_events

pytestmark = pytest.mark.usefixtures("client")
ours: ContextVar[bool] = ContextVar("ours", default=False)  # the app's own sealer runs alongside, as in production


@pytest.fixture
def postgres_only(kernel):
    if kernel.db.dialect != "postgresql":
        pytest.skip("the horizon and the advisory lock are PostgreSQL's (SQLite has one writer)")


@pytest.mark.usefixtures("postgres_only")
async def test_a_transaction_open_below_the_horizon_holds_later_events_back(kernel, owner_engine, make_tenant):
    tenant = await make_tenant()
    await seal(kernel, tenant.id)
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as slow:
            record(slow, "test.slow", "thing", 1)
            await slow.flush()  # has its position now, commits last
            await write_events(kernel, tenant.id, 2, "test.fast")
            outcome = await seal_block(kernel.db.engine, tenant.id, wait=True)
            assert outcome.more  # the fast events stand beyond the horizon: not sealed yet
            seals = await seals_of(owner_engine, tenant.id)
            async with kernel.db.transaction() as db:
                fast = (await db.execute(select(AuditEvent.txid).where(AuditEvent.action == "test.fast"))).scalars()
                assert all(t >= seals[-1].to_pos for t in fast)
    await seal(kernel, tenant.id)
    seals = await seals_of(owner_engine, tenant.id)
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            rows = (await db.execute(select(AuditEvent.action, AuditEvent.txid)
                                     .where(AuditEvent.action.in_(["test.slow", "test.fast"])))).all()
            report = await verify_chain(db, tenant.id)
    assert all(t < seals[-1].to_pos for _a, t in rows)
    slow_pos = next(t for a, t in rows if a == "test.slow")
    assert all(slow_pos < t for a, t in rows if a == "test.fast")  # sealed in position order, slow first
    assert report.ok and report.events_pending == 0


@pytest.mark.usefixtures("postgres_only")
async def test_a_second_sealer_returns_at_once(kernel, owner_engine, make_tenant):
    tenant = await make_tenant()
    await seal(kernel, tenant.id)
    await write_events(kernel, tenant.id, 3)
    async with sealer_held_off(kernel, tenant.id):
        started = time.monotonic()
        outcome = await seal_block(kernel.db.engine, tenant.id)
        assert outcome.busy and outcome.sealed == 0 and time.monotonic() - started < 1.0
    await seal(kernel, tenant.id)
    seals = await seals_of(owner_engine, tenant.id)
    assert sum(s.event_count for s in seals) >= 3


async def test_a_block_costs_the_same_statements_whatever_its_size(kernel, make_tenant, monkeypatch):
    from sqlalchemy import event

    from core.audit import sealer
    from core.audit.sealing import SealOutcome

    tenant = await make_tenant()
    await seal(kernel, tenant.id)

    async def app_sealer_idle(*_a, **_k):  # the app's sealer leaves these events to the test
        return SealOutcome()

    monkeypatch.setattr(sealer, "seal_block", app_sealer_idle)
    counts = []
    for n in (1, 200):
        await write_events(kernel, tenant.id, n)
        seen: list[str] = []

        def count(_c, _cur, statement, *_a, seen=seen):
            if ours.get():  # this task's statements only, not the app's work alongside
                seen.append(statement)

        event.listen(kernel.db.engine.sync_engine, "before_cursor_execute", count)
        token = ours.set(True)
        try:
            for _ in range(250):  # another transaction on the server may hold the horizon back a moment
                seen.clear()
                if (outcome := await seal_block(kernel.db.engine, tenant.id, wait=True)).sealed:
                    break
                await asyncio.sleep(0.02)
        finally:
            ours.reset(token)
            event.remove(kernel.db.engine.sync_engine, "before_cursor_execute", count)
        assert outcome.sealed == n, outcome
        assert not any(s.lstrip().upper().startswith("UPDATE") for s in seen)
        counts.append(len(seen))
    assert counts[0] == counts[1] and 4 <= counts[0] <= 8, counts  # lock, last seal, events, INSERT (+ probe)


@pytest.mark.usefixtures("postgres_only")
async def test_the_app_sealer_comes_back_once_the_horizon_moves(kernel, owner_engine, make_tenant):
    """Events held back by someone else's open transaction are sealed when it ends, with no commit of the
    tenant's to wake the sealer."""
    from sqlalchemy import text

    tenant = await make_tenant()
    await seal(kernel, tenant.id)
    async with owner_engine.connect() as other, other.begin():
        await other.execute(text("SELECT pg_current_xact_id()"))  # an open transaction with an id
        await write_events(kernel, tenant.id, 2, "test.held")
        await asyncio.sleep(0.8)  # the app's sealer has tried by now and waits
        seals = await seals_of(owner_engine, tenant.id)
        async with owner_engine.connect() as conn:
            held = (await conn.execute(text("SELECT txid FROM audit_events WHERE action = 'test.held'"))).scalars().all()
        assert all(t >= seals[-1].to_pos for t in held)
    for _ in range(50):
        seals = await seals_of(owner_engine, tenant.id)
        if all(t < seals[-1].to_pos for t in held):
            break
        await asyncio.sleep(0.1)
    assert all(t < seals[-1].to_pos for t in held)
