"""The outbox relay's statements use the partial indexes of unfinished rows, led by ``tenant_id`` (issue 13).

On PostgreSQL, with two hundred thousand delivered rows and a few hundred unfinished ones, ``EXPLAIN``
shows both of the relay's statements (the tenants with work, and one tenant's claim) reading
``ix_outbox_due`` / ``ix_outbox_in_flight`` and never scanning the table: their cost follows the unfinished
rows, not the history. The claim leads with ``tenant_id``, so a database distributed by tenant runs it on one
node. The webhook sweep's index leads with ``tenant_id`` too.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import Select, text
from sqlalchemy.dialects import postgresql

from core.db.base import utcnow
from core.jobs.relay import REDELIVER_AFTER, claim, tenants_with_work

DONE_ROWS = 200_000

_FILL = text(
    """
    insert into outbox (tenant_id, id, actor, payload, business_key, status, attempts, available_at,
                        enqueued_at, created_at)
    select (cast(:tenants as uuid[]))[1 + g % 3], gen_random_uuid(), 'plan_test', '{}',
           'plan:' || cast(:run as text) || ':' || g,
           case when g <= cast(:done as int) then 'done'
                when g % 3 = 0 then 'enqueued'
                when g % 3 = 1 then 'running'
                else 'pending' end,
           0, cast(:now as timestamptz) - (g % 1000) * interval '1 second',
           cast(:now as timestamptz) - interval '1 hour', cast(:now as timestamptz)
      from generate_series(1, cast(:total as int)) as g
    """
)


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


async def _explain(conn: Any, statement: Select[Any]) -> list[dict[str, Any]]:
    sql = str(statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    raw = (await conn.execute(text(f"explain (format json) {sql}"))).scalar_one()
    return _nodes((json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"])


async def test_relay_statements_read_the_partial_tenant_indexes(test_env, owner_engine, make_tenant):
    if test_env.backend != "postgresql":
        pytest.skip("EXPLAIN of PostgreSQL plans")
    tenants = [(await make_tenant()).id for _ in range(3)]
    now = utcnow()
    run = uuid.uuid4().hex[:8]
    async with owner_engine.begin() as conn:
        await conn.execute(
            _FILL, {"tenants": tenants, "run": run, "done": DONE_ROWS, "total": DONE_ROWS + 600, "now": now}
        )
        await conn.execute(text("analyze outbox"))
    try:
        async with owner_engine.connect() as conn:
            statements = {
                "tenants with work": tenants_with_work(now, REDELIVER_AFTER, 100),
                "claim": claim(tenants[0], now, REDELIVER_AFTER, 50),
            }
            for name, statement in statements.items():
                nodes = await _explain(conn, statement)
                scans = [n for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "outbox"]
                indexes = {n.get("Index Name") for n in nodes} - {None}
                assert scans == [], (name, nodes)
                assert indexes == {"ix_outbox_due", "ix_outbox_in_flight"}, (name, nodes)
            claim_nodes = await _explain(conn, statements["claim"])
            conditions = " ".join(n.get("Index Cond", "") for n in claim_nodes)
            assert "tenant_id" in conditions  # the tenant is in the index condition, not a filter after it
    finally:
        async with owner_engine.begin() as conn:
            await conn.execute(text("delete from outbox where actor = 'plan_test'"))


async def test_the_webhook_sweep_index_leads_with_the_tenant(test_env, owner_engine):
    if test_env.backend != "postgresql":
        pytest.skip("PostgreSQL catalog")
    async with owner_engine.connect() as conn:
        definition = (
            await conn.execute(text("select indexdef from pg_indexes where indexname = 'ix_webhook_deliveries_due'"))
        ).scalar_one()
    assert "(tenant_id, status, next_attempt_at)" in definition


def test_the_claim_names_its_tenant_and_the_statuses_literally() -> None:
    """The partial indexes' predicates must be provable from the SQL text itself, whatever plan PostgreSQL
    caches for a prepared statement: the statuses are written as literals, never bound."""
    tenant = uuid.uuid4()
    now = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    sql = str(claim(tenant, now, REDELIVER_AFTER, 10).compile(dialect=postgresql.dialect()))
    assert "outbox.tenant_id = %(tenant_id_1)s" in sql
    for status in ("pending", "enqueued", "running"):
        assert f"outbox.status = '{status}'" in sql
    assert "FOR UPDATE SKIP LOCKED" in sql


async def test_each_tenant_gets_a_share_of_a_pass_and_the_rest_follows(kernel, make_tenant):
    """A pass claims tenant by tenant, each up to an equal share of its limit: one tenant's backlog does
    not hold another's message back, and ``more`` tells the relay loop to go on at once."""
    from dramatiq import Message
    from dramatiq.brokers.stub import StubBroker

    from core.db.context import tenant_context
    from core.jobs.broker import TENANT_OPTION
    from core.jobs.outbox import enqueue
    from core.jobs.registry import declare_actors
    from core.jobs.relay import relay_once
    from tests.integration.jobs.conftest import FAR

    busy, quiet = (await make_tenant()).id, (await make_tenant()).id
    keys: list[str] = []
    for tenant, count in ((busy, 5), (quiet, 1)):
        with tenant_context(tenant):
            async with kernel.db.transaction() as db:
                for _ in range(count):
                    key = f"share:{uuid.uuid4().hex}"
                    # held (due only at FAR): the app's own relay leaves them to this test
                    enqueue(db, "purge_job_ledgers", {}, business_key=key, delay=FAR - utcnow() - dt.timedelta(hours=1))
                    keys.append(key)
    broker = StubBroker()
    broker.emit_after("process_boot")
    declare_actors(broker)
    first = await relay_once(kernel.db, broker, limit=4, now=FAR, tenant_ids=[busy, quiet], business_keys=keys)
    if kernel.db.dialect == "sqlite":  # one writer: one transaction a pass, oldest first, no shares
        assert first.enqueued == 4 and first.more
        second = await relay_once(kernel.db, broker, limit=4, now=FAR, tenant_ids=[busy, quiet], business_keys=keys)
        assert second.enqueued == 2 and not second.more
        assert len(broker.queues["maintenance"].queue) == 6
        return
    sent = [Message.decode(raw).options[TENANT_OPTION] for raw in broker.queues["maintenance"].queue]
    assert first.enqueued == 3 and first.more  # two of the busy tenant's five (its share), the quiet one's one
    assert sorted(sent) == sorted([str(busy), str(busy), str(quiet)])
    second = await relay_once(kernel.db, broker, limit=4, now=FAR, tenant_ids=[busy, quiet], business_keys=keys)
    assert second.enqueued == 3 and not second.more
    third = await relay_once(kernel.db, broker, limit=4, now=FAR, tenant_ids=[busy, quiet], business_keys=keys)
    assert third.enqueued == 0
