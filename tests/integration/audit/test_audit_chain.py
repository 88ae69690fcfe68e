"""The audit chain: changes append linked events; verify passes, then reports the first tampered row."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys

from sqlalchemy import text

from core.audit.services import GENESIS, seal_chain, verify_chain
from core.db.context import tenant_context


async def _seal(kernel, tenant) -> None:
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            await seal_chain(db, tenant.id)


async def test_onboarding_and_user_actions_are_chained(client, kernel, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant)
    await client.post("/api/v1/users", json={"email": "chain@shop.example.com", "role": "viewer"}, headers=creds.headers)
    events = (await client.get("/api/v1/audit/events?limit=100", headers=creds.headers)).json()["items"]
    actions = [e["action"] for e in reversed(events)]
    assert actions[:3] == ["tenant.created", "user.invited", "user.activated"]
    assert "api_client.created" in actions and actions[-1] == "user.invited"
    assert events[0]["actor_type"] == "client" and events[0]["actor_id"] == creds.client_id
    report = (await client.get("/api/v1/audit/verify", headers=creds.headers)).json()
    assert report == {"tenant_id": str(tenant.id), "ok": True, "events_checked": len(events),
                      "first_broken_seq": None, "reason": None}


async def test_tampered_event_is_reported_at_its_sequence(client, kernel, owner_engine, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant)
    await _seal(kernel, tenant)
    async with owner_engine.begin() as conn:
        await conn.execute(text(
            "update audit_events set action = 'tenant.deleted' where tenant_id = :t and seq = 2"
        ), {"t": tenant.id if owner_engine.dialect.name == "postgresql" else tenant.id.hex})
    report = (await client.get("/api/v1/audit/verify", headers=creds.headers)).json()
    assert report["ok"] is False and report["first_broken_seq"] == 2
    assert "hash" in report["reason"]


async def test_deleted_event_breaks_the_chain(kernel, owner_engine, make_tenant):
    tenant = await make_tenant()
    await _seal(kernel, tenant)
    tid = tenant.id if owner_engine.dialect.name == "postgresql" else tenant.id.hex
    async with owner_engine.begin() as conn:
        await conn.execute(text("delete from audit_events where tenant_id = :t and seq = 1"), {"t": tid})
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            report = await verify_chain(db, tenant.id)
    assert not report.ok and report.first_broken_seq == 1


async def test_chain_links_start_at_genesis_and_follow_each_other(kernel, owner_engine, make_tenant):
    tenant = await make_tenant()
    await _seal(kernel, tenant)
    tid = tenant.id if owner_engine.dialect.name == "postgresql" else tenant.id.hex
    async with owner_engine.connect() as conn:
        rows = (await conn.execute(text(
            "select seq, prev_hash, hash from audit_events where tenant_id = :t order by seq"), {"t": tid})).all()
    assert rows[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(rows):
        assert after.prev_hash == before.hash and after.seq == before.seq + 1


async def test_cli_audit_verify_exit_codes(settings, kernel, owner_engine, make_tenant):
    clean, tampered = await make_tenant(), await make_tenant()
    await _seal(kernel, tampered)
    tid = tampered.id if owner_engine.dialect.name == "postgresql" else tampered.id.hex
    async with owner_engine.begin() as conn:
        await conn.execute(text("update audit_events set actor_id = 'mallory' where tenant_id = :t and seq = 3"),
                           {"t": tid})
    env = {**os.environ, "KAQUAN_DATABASE_URL": settings.db_url, "KAQUAN_DATABASE_OWNER_URL": settings.owner_db_url,
           "KAQUAN_MASTER_KEY": settings.master_key, "KAQUAN_DATA_DIR": settings.data_dir, "LANG": "C"}

    def run(slug: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "core.cli", "audit", "verify", "--tenant", slug], env=env,
                              capture_output=True, text=True, timeout=120)

    ok = await asyncio.to_thread(run, clean.slug)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok" in ok.stdout
    bad = await asyncio.to_thread(run, tampered.slug)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "broken at event 3" in bad.stdout
    missing = await asyncio.to_thread(run, "no-such-tenant")
    assert missing.returncode == 1 and "tenant_not_found" in missing.stderr


async def test_events_are_written_unsealed_and_sealed_in_order_after_commit(kernel, make_tenant):
    from sqlalchemy import select

    from core.audit.models import AuditEvent
    from core.audit.services import record

    tenant = await make_tenant()
    await _seal(kernel, tenant)
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            for i in range(3):
                record(db, "test.event", "thing", i, {"i": i})
        async with kernel.db.transaction() as db:
            await seal_chain(db, tenant.id)
            rows = (await db.execute(select(AuditEvent).where(AuditEvent.action == "test.event")
                                     .order_by(AuditEvent.seq))).scalars().all()
            report = await verify_chain(db, tenant.id)
    assert [r.data["i"] for r in rows] == [0, 1, 2]
    assert all(r.hash for r in rows) and rows[1].prev_hash == rows[0].hash
    assert report.ok


async def test_the_app_sealer_seals_shortly_after_commit(client, kernel, make_tenant):
    import asyncio

    from sqlalchemy import func, select

    from core.audit.models import AuditEvent

    tenant = await make_tenant()
    for _ in range(50):
        with tenant_context(tenant.id):
            async with kernel.db.transaction() as db:
                pending = await db.scalar(select(func.count()).select_from(AuditEvent)
                                          .where(AuditEvent.seq.is_(None)))
        if pending == 0:
            break
        await asyncio.sleep(0.1)
    assert pending == 0
