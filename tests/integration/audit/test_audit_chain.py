"""The audit chain: changes append events, sealed in blocks (one seal row per block, events never updated);
the API lists them newest first with their block; verify recomputes every block."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from core.audit.models import AuditEvent
from core.audit.services import GENESIS, check_chain, verify_chain
from core.db.context import tenant_context
from tests.integration.audit.helpers import (
    events_of,
    key,
    seal,
    sealer_held_off,
    seals_of,
    tampering,
    write_events,
)


async def test_onboarding_and_user_actions_are_chained(client, kernel, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant)
    await client.post("/api/v1/users", json={"email": "chain@shop.example.com", "role": "viewer"}, headers=creds.headers)
    events = (await client.get("/api/v1/audit/events?limit=100", headers=creds.headers)).json()["items"]
    actions = [e["action"] for e in reversed(events)]
    assert actions[:3] == ["tenant.created", "user.invited", "user.activated"]
    assert "api_client.created" in actions and actions[-1] == "user.invited"
    assert events[0]["actor_type"] == "client" and events[0]["actor_id"] == creds.client_id
    assert "seq" not in events[0] and "hash" not in events[0]
    assert all(e["block"] is None or e["block"] >= 1 for e in events)
    report = (await client.get("/api/v1/audit/verify", headers=creds.headers)).json()
    assert report["tenant_id"] == str(tenant.id) and report["ok"] is True
    assert report["events_checked"] + report["events_pending"] == len(events)
    assert report["blocks_checked"] >= 1 and report["first_broken_block"] is None and report["reason"] is None
    listed = (await client.get("/api/v1/audit/events?limit=100", headers=creds.headers)).json()["items"]
    assert sum(1 for e in listed if e["block"] is not None) >= report["events_checked"]


async def test_the_list_pages_newest_first_by_event_id(client, kernel, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant)
    await write_events(kernel, tenant.id, 5, "test.paged")
    await seal(kernel, tenant.id)
    everything = (await client.get("/api/v1/audit/events?limit=500", headers=creds.headers)).json()["items"]
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids))
    seen, cursor = [], None
    while True:
        url = "/api/v1/audit/events?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url, headers=creds.headers)).json()
        seen += [e["id"] for e in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == ids
    assert all(e["block"] is not None for e in everything)  # sealed above
    r = await client.get("/api/v1/audit/events?cursor=17", headers=creds.headers)
    assert r.status_code in (400, 422) and r.headers["content-type"].startswith("application/problem+json")


async def test_blocks_follow_each_other_from_genesis(kernel, owner_engine, make_tenant):
    tenant = await make_tenant()
    await seal(kernel, tenant.id)
    for n in (3, 1, 4):
        await write_events(kernel, tenant.id, n)
        await seal(kernel, tenant.id)
    seals = await seals_of(owner_engine, tenant.id)
    assert len(seals) >= 4 and seals[0].block == 1 and seals[0].from_pos == 0 and seals[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(seals):
        assert after.block == before.block + 1 and after.from_pos == before.to_pos
        assert after.prev_hash == before.hash
    events = await events_of(owner_engine, tenant.id)
    assert sum(s.event_count for s in seals) == len(events)
    for s in seals:  # each block holds exactly the events of its position range
        assert s.event_count == sum(1 for e in events if s.from_pos <= e.txid < s.to_pos)
    assert [e.action for e in events[-8:]] == ["test.event"] * 8
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            report = await verify_chain(db, tenant.id)
    assert report.ok and report.blocks_checked == len(seals) and report.events_checked == len(events)


async def test_nothing_to_seal_writes_no_seal_row(kernel, owner_engine, make_tenant):
    tenant = await make_tenant()
    await seal(kernel, tenant.id)
    before = await seals_of(owner_engine, tenant.id)
    assert await seal(kernel, tenant.id) == 0
    assert await seals_of(owner_engine, tenant.id) == before


async def test_pending_events_are_listed_as_pending_and_never_broken(client, kernel, owner_engine, make_tenant,
                                                                     make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant)
    await seal(kernel, tenant.id)
    async with sealer_held_off(kernel, tenant.id):
        await write_events(kernel, tenant.id, 3, "test.pending")
        with tenant_context(tenant.id):
            async with kernel.db.transaction() as db:
                report = await check_chain(db, tenant.id)
        listed = (await client.get("/api/v1/audit/events?limit=3", headers=creds.headers)).json()["items"]
    assert report.ok and report.events_pending == 3 and report.first_broken_block is None
    assert [(e["action"], e["block"]) for e in listed] == [("test.pending", None)] * 3
    await seal(kernel, tenant.id)
    listed = (await client.get("/api/v1/audit/events?limit=3", headers=creds.headers)).json()["items"]
    assert all(e["block"] for e in listed)


async def test_event_and_seal_rows_are_append_only(kernel, make_tenant):
    """The app's role cannot rewrite or remove audit rows; sealing never needs to."""
    tenant = await make_tenant()
    await seal(kernel, tenant.id)
    for statement in ("update audit_events set action = 'x' where tenant_id = :t",
                      "delete from audit_events where tenant_id = :t",
                      "update audit_seals set hash = 'x' where tenant_id = :t",
                      "delete from audit_seals where tenant_id = :t"):
        with tenant_context(tenant.id), pytest.raises(DBAPIError, match="append-only"):
            async with kernel.db.transaction() as db:
                await db.execute(text(statement), {"t": key(kernel.db.engine, tenant.id)})


async def test_cli_audit_verify_exit_codes(settings, kernel, owner_engine, make_tenant):
    clean, tampered = await make_tenant(), await make_tenant()
    await seal(kernel, tampered.id)
    third = (await events_of(owner_engine, tampered.id))[2]
    block = next(s.block for s in await seals_of(owner_engine, tampered.id) if s.from_pos <= third.txid < s.to_pos)
    async with tampering(owner_engine) as conn:
        await conn.execute(text("update audit_events set actor_id = 'mallory' where tenant_id = :t and id = :id"),
                           {"t": key(owner_engine, tampered.id), "id": third.id})
    env = {**os.environ, "KAQUAN_DATABASE_URL": settings.db_url, "KAQUAN_DATABASE_OWNER_URL": settings.owner_db_url,
           "KAQUAN_MASTER_KEY": settings.master_key, "KAQUAN_DATA_DIR": settings.data_dir, "LANG": "C",
           "COLUMNS": "250"}

    def run(slug: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "core.cli", "audit", "verify", "--tenant", slug], env=env,
                              capture_output=True, text=True, timeout=120)

    ok = await asyncio.to_thread(run, clean.slug)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok" in ok.stdout
    bad = await asyncio.to_thread(run, tampered.slug)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"broken at block {block}" in bad.stdout and "changed" in bad.stdout
    missing = await asyncio.to_thread(run, "no-such-tenant")
    assert missing.returncode == 1 and "tenant_not_found" in missing.stderr


async def test_the_app_sealer_seals_shortly_after_commit(client, kernel, owner_engine, make_tenant):
    tenant = await make_tenant()
    await write_events(kernel, tenant.id, 20, "test.background")
    for _ in range(100):
        seals = await seals_of(owner_engine, tenant.id)
        events = await events_of(owner_engine, tenant.id)
        if seals and all(e.txid < seals[-1].to_pos for e in events):
            break
        await asyncio.sleep(0.1)
    assert seals and all(e.txid < seals[-1].to_pos for e in events)


async def test_record_stamps_the_position_of_the_transaction(kernel, owner_engine, make_tenant):
    tenant = await make_tenant()
    await write_events(kernel, tenant.id, 3, "test.first")
    await write_events(kernel, tenant.id, 2, "test.second")
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            rows = (await db.execute(select(AuditEvent.action, AuditEvent.txid).where(
                AuditEvent.action.in_(["test.first", "test.second"])).order_by(AuditEvent.txid))).all()
    first = {t for a, t in rows if a == "test.first"}
    second = {t for a, t in rows if a == "test.second"}
    assert max(first) < min(second)  # a later commit stands later
    if owner_engine.dialect.name == "postgresql":
        assert len(first) == 1 and len(second) == 1  # one transaction, one position


async def test_the_scheduled_job_seals_what_no_sealer_saw(settings, kernel, owner_engine, make_tenant, monkeypatch):
    """Events a worker wrote (no in-process sealer there) are sealed by the per-tenant periodic job."""
    from core.audit import sealer
    from core.audit.sealing import SealOutcome
    from core.jobs.actors import seal_audit_chain
    from core.jobs.context import JobEnv, reset_job_context, set_job_context
    from core.plugin_host import load_plugins

    tenant = await make_tenant()
    await seal(kernel, tenant.id)

    async def app_sealer_idle(*_a, **_k):
        return SealOutcome()

    monkeypatch.setattr(sealer, "seal_block", app_sealer_idle)
    await write_events(kernel, tenant.id, 4, "test.from_worker")
    held = [e for e in await events_of(owner_engine, tenant.id) if e.action == "test.from_worker"]

    async def sealed_to() -> int:
        return (await seals_of(owner_engine, tenant.id))[-1].to_pos

    assert min(e.txid for e in held) >= await sealed_to()
    tokens = set_job_context(JobEnv(settings, kernel.keys, load_plugins()), None)
    try:
        for _ in range(100):  # another transaction on the server may hold the horizon back a moment
            with tenant_context(tenant.id):
                await seal_audit_chain()
            if max(e.txid for e in held) < await sealed_to():
                break
            await asyncio.sleep(0.05)
    finally:
        reset_job_context(tokens)
    assert max(e.txid for e in held) < await sealed_to()
