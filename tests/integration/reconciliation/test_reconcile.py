"""Reconciliation: every class, a refund in a later period, a statement stored twice, resolutions."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from core.db.context import tenant_context
from core.errors import Conflict, ValidationFailed
from core.events.models import Event
from core.settlement.models import ReconItem, ReconRun, Settlement
from core.settlement.reconcile import reconcile
from core.settlement.resolutions import resolve_item
from core.splits.ledger import EntryIn, append, lock_period
from core.splits.models import SplitEntry
from tests.integration.reconciliation.recon_fixtures import World, at, make_world


@pytest.fixture
async def world(kernel: Any, make_tenant: Any) -> World:
    tenant = await make_tenant()
    return await make_world(kernel, tenant.id)


async def _run(world: World, period: str = "2026-03") -> ReconRun:
    with tenant_context(world.tenant_id):
        async with world.kernel.db.transaction() as db:
            run = await reconcile(db, world.account_id, period, by="tester")
            return run


async def _items(world: World, run_id: uuid.UUID) -> dict[tuple[str, str], ReconItem]:
    with tenant_context(world.tenant_id):
        async with world.kernel.db.transaction() as db:
            items = (await db.execute(select(ReconItem).where(ReconItem.run_id == run_id))).scalars().all()
            return {(i.channel_order_id, i.klass): i for i in items}


async def _scenario(world: World) -> None:
    await world.sale("A1", {"L1": 10000}, at(3))
    await world.sale("A2", {"1": 5000}, at(3))
    await world.sale("A3", {"L1": 8000}, at(3))
    await world.sale("A4", {"L1": 6000}, at(3))
    await world.sale("A6", {"L1": 6000}, at(3), channel_bp=1500, post_bp=1000)  # rows differ, rule agrees
    await world.sale("A5", {"L1": 3000, "L2": 2000}, at(3))
    await world.statement([
        {"line_id": "s1", "order_id": "A1", "order_line_id": "L1", "amount_fen": 10000, "commission_fen": 1000},
        {"line_id": "s2", "order_id": "A2", "amount_fen": 5000, "commission_fen": 500},
        {"line_id": "s3", "order_id": "A3", "order_line_id": "L1", "amount_fen": 7900, "commission_fen": 790},
        {"line_id": "s4", "order_id": "A4", "order_line_id": "L1", "amount_fen": 6000, "commission_fen": 900},
        {"line_id": "s6", "order_id": "A6", "order_line_id": "L1", "amount_fen": 6000, "commission_fen": 900},
        {"line_id": "s5", "order_id": "A5", "order_line_id": "L2", "amount_fen": 2000, "commission_fen": 200},
        {"line_id": "s7", "order_id": "ZZ", "order_line_id": "L1", "amount_fen": 1234, "commission_fen": 0},
        {"line_id": "s1-again", "order_id": "A1", "order_line_id": "L1", "amount_fen": 10000,
         "commission_fen": 1000, "occurred_at": at(3, 11)},
        {"line_id": "s8", "order_id": "A1", "order_line_id": "L1", "amount_fen": 10000, "commission_fen": 1000,
         "occurred_at": at(2)},  # February: not this period's
    ])


async def test_every_class_with_both_amounts(world: World) -> None:
    await _scenario(world)
    run = await _run(world)
    assert run.status == "done"
    assert run.counts == {"matched": 4, "amount_mismatch": 1, "missing_theirs": 1, "missing_ours": 1,
                          "duplicate": 1, "rate_differs": 1, "resolved": 0, "open": 5, "carried": 0}
    items = await _items(world, run.id)
    for key in [("A1", "matched"), ("A2", "matched"), ("A6", "matched"), ("A5", "matched")]:
        assert items[key].status == "ok"
    assert items[("A2", "matched")].channel_line_id == "1"  # the order's only line
    mismatch = items[("A3", "amount_mismatch")]
    assert (mismatch.their_amount_fen, mismatch.our_amount_fen, mismatch.diff_fen) == (7900, 8000, -100)
    assert (mismatch.their_commission_fen, mismatch.our_commission_fen) == (790, 800)
    rate = items[("A4", "rate_differs")]
    assert (rate.their_amount_fen, rate.our_amount_fen, rate.their_commission_fen, rate.our_commission_fen) == (
        6000, 6000, 900, 600)
    missing = items[("A5", "missing_theirs")]
    assert missing.channel_line_id == "L1" and missing.our_amount_fen == 3000 and missing.their_amount_fen is None
    assert missing.order_line_id == world.lines["A5/L1"]
    ours = items[("ZZ", "missing_ours")]
    assert ours.order_line_id is None and ours.their_amount_fen == 1234 and ours.diff_fen == 1234
    dup = items[("A1", "duplicate")]
    assert dup.order_line_id == world.lines["A1/L1"] and dup.their_amount_fen == 10000
    with tenant_context(world.tenant_id):
        async with world.kernel.db.transaction() as db:
            events = (await db.execute(select(Event).where(Event.type == "reconciliation.mismatch"))).scalars().all()
            assert [e.object_id for e in events] == [str(run.id)]
            assert events[0].data["counts"]["open"] == 5
            s = (await db.execute(select(Settlement).where(Settlement.period == "2026-03"))).scalar_one()
            assert s.status == "open" and s.last_run_id == run.id


async def test_exact_match_reconciles_the_settlement(world: World) -> None:
    await world.sale("A1", {"L1": 10000}, at(3))
    await world.statement([{"line_id": "s1", "order_id": "A1", "order_line_id": "L1", "amount_fen": 10000,
                            "commission_fen": 1000}])
    run = await _run(world)
    assert run.counts["matched"] == 1 and run.counts["open"] == 0
    with tenant_context(world.tenant_id):
        async with world.kernel.db.transaction() as db:
            s = (await db.execute(select(Settlement).where(Settlement.period == "2026-03"))).scalar_one()
            assert s.status == "reconciled"
            assert await db.scalar(select(func.count()).select_from(Event).where(
                Event.type == "reconciliation.mismatch")) == 0
            assert await db.scalar(select(func.count()).select_from(Event).where(
                Event.type == "settlement.ready")) == 1


async def test_a_refund_in_a_later_period_is_reconciled_there(world: World) -> None:
    [line] = await world.sale("B1", {"L1": 10000}, at(3))
    [line2] = await world.sale("B2", {"L1": 4000}, at(3))
    # March is confirmed (locked): a refund dated in March lands in April, as does the channel's report
    with tenant_context(world.tenant_id):
        async with world.kernel.db.transaction() as db:
            await lock_period(db, world.account_id, "2026-03", "tester")
    await world.rows(line, "refund", "r1", {"channel": -1000, "tenant": -9000}, at(4, 2))
    await world.rows(line2, "refund", "r2", {"channel": -400, "tenant": -3600}, at(3, 28))
    await world.statement([
        {"line_id": "s1", "order_id": "B1", "order_line_id": "L1", "amount_fen": 10000, "commission_fen": 1000},
        {"line_id": "s2", "order_id": "B2", "order_line_id": "L1", "amount_fen": 4000, "commission_fen": 400},
        {"line_id": "r1", "order_id": "B1", "order_line_id": "L1", "kind": "refund", "amount_fen": 10000,
         "commission_fen": -1000, "occurred_at": at(4, 3)},
        {"line_id": "r2", "order_id": "B2", "order_line_id": "L1", "kind": "refund", "amount_fen": 4000,
         "occurred_at": at(4, 1)},
    ])
    march = await _run(world, "2026-03")
    assert march.counts["matched"] == 2 and march.counts["open"] == 0
    april = await _run(world, "2026-04")
    assert april.counts["matched"] == 2 and april.counts["open"] == 0
    items = await _items(world, april.id)
    assert items[("B1", "matched")].kind == "refund" and items[("B1", "matched")].our_amount_fen == 10000
    # their refund reported, ours not yet: a mismatch of the whole amount
    await world.statement([{"line_id": "r3", "order_id": "B1", "order_line_id": "L1", "kind": "refund",
                            "amount_fen": 500, "occurred_at": at(5, 3)}])
    may = await _run(world, "2026-05")
    assert may.counts["amount_mismatch"] == 1
    item = next(iter((await _items(world, may.id)).values()))
    assert (item.their_amount_fen, item.our_amount_fen, item.diff_fen) == (500, 0, 500)


async def test_a_statement_stored_twice_doubles_nothing(world: World) -> None:
    await world.sale("A1", {"L1": 10000}, at(3))
    line = {"line_id": "s1", "order_id": "A1", "order_line_id": "L1", "amount_fen": 10000, "commission_fen": 1000}
    assert await world.statement([line]) == 1
    assert await world.statement([line]) == 0
    first = await _run(world)
    second = await _run(world)
    assert first.counts == second.counts and first.counts["matched"] == 1 and first.counts["duplicate"] == 0
    with tenant_context(world.tenant_id):
        async with world.kernel.db.transaction() as db:
            assert await db.scalar(select(func.count()).select_from(ReconItem)) == 2  # one per run, none removed


async def _resolve(world: World, item: ReconItem, resolution: str, reason: str = "checked with the channel",
                   amount: int | None = None) -> ReconItem:
    with tenant_context(world.tenant_id):
        async with world.kernel.db.transaction() as db:
            return await resolve_item(db, item.id, resolution, reason, amount, by="tester")


async def _line_totals(world: World, line: uuid.UUID | None, ref: uuid.UUID) -> dict[str, int]:
    with tenant_context(world.tenant_id):
        async with world.kernel.db.transaction() as db:
            rows = await db.execute(select(SplitEntry.party, func.sum(SplitEntry.amount_fen)).where(
                SplitEntry.event == "adjustment", SplitEntry.event_ref == str(ref)).group_by(SplitEntry.party))
            return {p: int(a) for p, a in rows.all()}


async def test_each_resolution_with_a_reason(world: World) -> None:
    await _scenario(world)
    run = await _run(world)
    items = await _items(world, run.id)
    with pytest.raises(ValidationFailed) as bad:
        await _resolve(world, items[("A3", "amount_mismatch")], "accept_theirs", "  ")
    assert bad.value.code == "resolution_invalid"
    with pytest.raises(ValidationFailed):
        await _resolve(world, items[("A4", "rate_differs")], "adjustment", "no amount")
    with pytest.raises(Conflict) as matched:
        await _resolve(world, items[("A1", "matched")], "accept_ours")
    assert matched.value.code == "recon_item_not_open"

    mismatch = await _resolve(world, items[("A3", "amount_mismatch")], "accept_theirs")
    assert mismatch.status == "resolved" and mismatch.adjustment_fen == -90
    assert await _line_totals(world, None, mismatch.id) == {"channel": -10, "tenant": -90}
    with pytest.raises(Conflict):
        await _resolve(world, items[("A3", "amount_mismatch")], "accept_ours")
    assert (await _resolve(world, items[("ZZ", "missing_ours")], "accept_ours")).adjustment_fen == 0
    assert await _line_totals(world, None, items[("ZZ", "missing_ours")].id) == {}
    rate = await _resolve(world, items[("A4", "rate_differs")], "adjustment", "agreed credit", 300)
    assert await _line_totals(world, None, rate.id) == {"channel": -300, "tenant": 300}
    await _resolve(world, items[("A5", "missing_theirs")], "accept_theirs")
    assert await _line_totals(world, None, items[("A5", "missing_theirs")].id) == {"channel": -300, "tenant": -2700}
    with tenant_context(world.tenant_id):
        async with world.kernel.db.transaction() as db:
            s = (await db.execute(select(Settlement).where(Settlement.period == "2026-03"))).scalar_one()
            assert s.status == "open"
    await _resolve(world, items[("A1", "duplicate")], "accept_theirs")
    assert await _line_totals(world, None, items[("A1", "duplicate")].id) == {"channel": 1000, "tenant": 9000}
    with tenant_context(world.tenant_id):
        async with world.kernel.db.transaction() as db:
            s = (await db.execute(select(Settlement).where(Settlement.period == "2026-03"))).scalar_one()
            assert s.status == "reconciled"
            done = await db.get(ReconRun, (world.tenant_id, run.id))
            assert done is not None and done.counts["open"] == 0
            # the adjustment rows landed in the period of today (the first unlocked one), nothing deleted
            assert await db.scalar(select(func.count()).select_from(ReconItem)) == len(items)
    # a new run carries every resolution of items that did not change
    again = await _run(world)
    assert again.counts["open"] == 0 and again.counts["carried"] == 5 and again.counts["resolved"] == 5


async def test_a_superseded_run_cannot_be_resolved(world: World) -> None:
    await world.sale("A5", {"L1": 3000}, at(3))
    first = await _run(world)
    await _run(world)
    [item] = (await _items(world, first.id)).values()
    with pytest.raises(Conflict) as err:
        await _resolve(world, item, "accept_ours")
    assert err.value.code == "recon_run_superseded"


async def test_adjustment_rows_after_a_locked_period_go_to_the_next(world: World) -> None:
    with tenant_context(world.tenant_id):
        async with world.kernel.db.transaction() as db:
            await append(db, [EntryIn(account_id=world.account_id, event="adjustment", event_ref="x",
                                      party="tenant", amount_fen=1, occurred_at=at(6))])
            await lock_period(db, world.account_id, "2026-07", "tester")
            await append(db, [EntryIn(account_id=world.account_id, event="adjustment", event_ref="y",
                                      party="tenant", amount_fen=1, occurred_at=at(7))])
            periods = dict((await db.execute(select(SplitEntry.event_ref, SplitEntry.period))).all())
            assert periods == {"x": "2026-06", "y": "2026-08"}
