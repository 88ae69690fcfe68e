"""Tampering as the owner, bypassing kaquan (and the append-only triggers): verify names the first broken
block and why; the API and the console report it too."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from core.audit.services import ChainReport, verify_chain
from core.db.context import tenant_context
from tests.integration.audit.helpers import events_of, key, seal, seals_of, tampering, write_events


async def _chain(kernel, owner_engine, make_tenant, blocks: int = 3):
    """A tenant with ``blocks`` more sealed blocks of 3 events each after its onboarding events."""
    tenant = await make_tenant()
    await seal(kernel, tenant.id)
    for _ in range(blocks):
        await write_events(kernel, tenant.id, 3)
        await seal(kernel, tenant.id)
    return tenant, await seals_of(owner_engine, tenant.id), await events_of(owner_engine, tenant.id)


async def _verify(kernel, tenant_id: uuid.UUID) -> ChainReport:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return await verify_chain(db, tenant_id)


def _block_of(seals, event) -> int:
    return next(s.block for s in seals if s.from_pos <= event.txid < s.to_pos)


async def test_a_changed_event_breaks_its_block(client, kernel, owner_engine, make_tenant, make_api_client):
    tenant, seals, events = await _chain(kernel, owner_engine, make_tenant)
    victim = events[-4]
    async with tampering(owner_engine) as conn:
        await conn.execute(text("update audit_events set data = :d where tenant_id = :t and id = :id"),
                           {"d": '{"i": 99}', "t": key(owner_engine, tenant.id), "id": victim.id})
    report = await _verify(kernel, tenant.id)
    block = _block_of(seals, victim)
    assert not report.ok and report.first_broken_block == block
    assert "changed" in report.reason
    assert report.blocks_checked == block - 1
    creds = await make_api_client(tenant)
    api = (await client.get("/api/v1/audit/verify", headers=creds.headers)).json()
    assert api["ok"] is False and api["first_broken_block"] == block


async def test_a_deleted_event_breaks_its_block(kernel, owner_engine, make_tenant):
    tenant, seals, events = await _chain(kernel, owner_engine, make_tenant)
    victim = events[1]
    async with tampering(owner_engine) as conn:
        await conn.execute(text("delete from audit_events where tenant_id = :t and id = :id"),
                           {"t": key(owner_engine, tenant.id), "id": victim.id})
    report = await _verify(kernel, tenant.id)
    assert not report.ok and report.first_broken_block == _block_of(seals, victim)
    assert "deleted or inserted" in report.reason


async def test_an_event_inserted_into_a_sealed_block_breaks_it(kernel, owner_engine, make_tenant):
    tenant, seals, events = await _chain(kernel, owner_engine, make_tenant)
    model = events[-2]  # copied, with its position, into the same (sealed) block
    async with tampering(owner_engine) as conn:
        await conn.execute(text(
            "insert into audit_events (tenant_id, id, txid, occurred_at, actor_type, actor_id, action, object_type,"
            " object_id, data, created_at) select tenant_id, :new, txid, occurred_at, actor_type, 'mallory',"
            " 'codes.exported', object_type, object_id, data, created_at from audit_events"
            " where tenant_id = :t and id = :id"
        ), {"new": key(owner_engine, uuid.uuid4()), "t": key(owner_engine, tenant.id), "id": model.id})
    report = await _verify(kernel, tenant.id)
    assert not report.ok and report.first_broken_block == _block_of(seals, model)
    assert "deleted or inserted" in report.reason


async def test_an_event_moved_before_the_first_block_is_found(kernel, owner_engine, make_tenant):
    tenant, _seals, events = await _chain(kernel, owner_engine, make_tenant, blocks=1)
    async with tampering(owner_engine) as conn:
        await conn.execute(text("update audit_events set txid = -5 where tenant_id = :t and id = :id"),
                           {"t": key(owner_engine, tenant.id), "id": events[-1].id})
    report = await _verify(kernel, tenant.id)
    assert not report.ok and report.first_broken_block == 1 and "outside every block" in report.reason


async def test_a_changed_seal_row_breaks_the_chain(kernel, owner_engine, make_tenant):
    tenant, seals, _events = await _chain(kernel, owner_engine, make_tenant)
    target = seals[1]
    async with tampering(owner_engine) as conn:  # the seal's hash recomputed by hand would not help either
        await conn.execute(text("update audit_seals set hash = :h where tenant_id = :t and block = :b"),
                           {"h": "f" * 64, "t": key(owner_engine, tenant.id), "b": target.block})
    report = await _verify(kernel, tenant.id)
    assert not report.ok and report.first_broken_block == target.block and "seal row was changed" in report.reason


async def test_a_changed_block_range_breaks_the_chain(kernel, owner_engine, make_tenant):
    """A seal's range or count cannot be changed on its own (to leave an inserted event outside a block,
    say): the block's hash covers its header."""
    tenant, seals, _events = await _chain(kernel, owner_engine, make_tenant, blocks=1)
    last = seals[-1]
    async with tampering(owner_engine) as conn:
        await conn.execute(text("update audit_seals set to_pos = to_pos + 1000 where tenant_id = :t and block = :b"),
                           {"t": key(owner_engine, tenant.id), "b": last.block})
    report = await _verify(kernel, tenant.id)
    assert not report.ok and report.first_broken_block == last.block and "seal row was changed" in report.reason


async def test_a_deleted_seal_row_is_a_missing_block(kernel, owner_engine, make_tenant):
    tenant, seals, _events = await _chain(kernel, owner_engine, make_tenant)
    async with tampering(owner_engine) as conn:
        await conn.execute(text("delete from audit_seals where tenant_id = :t and block = :b"),
                           {"t": key(owner_engine, tenant.id), "b": seals[1].block})
    report = await _verify(kernel, tenant.id)
    assert not report.ok and report.first_broken_block == seals[1].block and "missing" in report.reason
