"""The bulk-grant job works in chunks: few statements per recipient, progress per chunk, a row's own error
never undoes its chunk's good rows, a chunk that breaks as a whole is granted row by row, and a run
stopped in the middle of a chunk loses nothing and grants nothing twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import event, select

from core.bulk_grants import run as bulk_run
from core.bulk_grants.models import BulkGrantKey, BulkGrantRow
from core.db.context import tenant_context
from core.grants import services as grant_services
from core.grants.models import Grant, GrantItem
from core.inventory.models import Code
from core.members.schemas import MemberCreate, MemberUpdate
from core.members.services import create_member, update_member
from core.risk import engine
from core.risk.models import RiskRefusal
from core.risk.schemas import BlockIn
from core.risk.services import add_block
from tests.integration.bulk_grants.conftest import count, csv_bytes, new_product, phones, upload
from tests.integration.bulk_grants.test_bulk_grants import _confirm_without_job
from tests.integration.risk.helpers import set_rules

HEADER = ["姓名", "手机号", "商品编码", "数量"]
ROOT = str(Path(__file__).resolve().parents[3])


async def prepared(client: Any, kernel: Any, shop: Any, rows: list[tuple[Any, ...]]) -> uuid.UUID:
    """Upload and confirm (no broker message): the test runs the job body itself."""
    r = await upload(client, shop, csv_bytes(HEADER, rows), "list.csv")
    assert r.status_code == 201, r.text
    bulk_id = uuid.UUID(r.json()["id"])
    await _confirm_without_job(kernel, shop.tenant.id, bulk_id)
    return bulk_id


async def row_states(
    kernel: Any, tenant_id: uuid.UUID, bulk_id: uuid.UUID
) -> dict[int, tuple[str, str | None]]:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            found = await db.execute(
                select(BulkGrantRow.row_number, BulkGrantRow.status, BulkGrantRow.error_code).where(
                    BulkGrantRow.bulk_grant_id == bulk_id
                )
            )
            return {n: (status, code) for n, status, code in found.all()}


@contextmanager
def counting_statements(kernel: Any) -> Iterator[list[str]]:
    seen: list[str] = []

    def count_one(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    target = kernel.db.engine.sync_engine
    event.listen(target, "before_cursor_execute", count_one)
    try:
        yield seen
    finally:
        event.remove(target, "before_cursor_execute", count_one)


async def test_the_job_is_set_based_and_moves_progress_chunk_by_chunk(client, kernel, shop):
    sku, _ = await new_product(kernel, shop.tenant.id, 70)
    bulk_id = await prepared(
        client, kernel, shop, [(f"员工{i}", p, sku, 1) for i, p in enumerate(phones(60))]
    )
    steps: list[tuple[int, int]] = []
    with tenant_context(shop.tenant.id), counting_statements(kernel) as statements:
        outcome = await bulk_run.run_bulk_grant(
            kernel, bulk_id, chunk_rows=25, on_progress=lambda done, total: steps.append((done, total))
        )
    assert (outcome.status, outcome.granted, outcome.failed) == ("done", 60, 0)
    assert steps == [(25, 60), (50, 60), (60, 60)]  # progress per chunk, in the chunk's own transaction
    # Row by row it took ~15 statements per recipient; set-based, what is left per recipient is the risk
    # gate's blocklist look-up; the rest (~30 statements) is per chunk.
    # Not the job's: the outbox relay sending the delivery messages and the audit sealer, working alongside.
    own = [s for s in statements if not ("outbox" in s and "INSERT" not in s) and "audit_seals" not in s]
    own = [s for s in own if not (s.startswith(("SELECT audit_events", "SELECT EXISTS")) and "FROM audit_events" in s)
           and "pg_snapshot_xmin" not in s and s != "BEGIN IMMEDIATE"]
    assert len(own) <= 60 + 3 * 35, f"{len(own)} statements for 60 recipients in 3 chunks"
    assert await count(kernel, shop.tenant.id, Grant, Grant.source == "bulk") == 60
    assert await count(kernel, shop.tenant.id, Code, Code.state == "issued") == 60


async def test_a_rows_own_error_does_not_undo_the_good_rows_of_its_chunk(client, kernel, settings, shop):
    sku, _ = await new_product(kernel, shop.tenant.id, 10)
    other_sku, _ = await new_product(kernel, shop.tenant.id, 10)
    scarce_sku, _ = await new_product(kernel, shop.tenant.id, 1)
    p = phones(6)
    await set_rules(kernel, shop.tenant.id, ("grant", "member", "day", 1))
    with tenant_context(shop.tenant.id):
        async with kernel.db.transaction() as db:
            await add_block(db, kernel, BlockIn(kind="phone", value=p[1], note="scalper"))
            blocked = await create_member(db, kernel, MemberCreate(phone=p[2]))
            await update_member(db, kernel, blocked.id, MemberUpdate(status="blocked"))
    bulk_id = await prepared(
        client,
        kernel,
        shop,
        [
            ("好", p[0], sku, 1),  # row 2: granted
            ("黑名单", p[1], sku, 1),  # row 3: blocklisted phone
            ("停用", p[2], sku, 1),  # row 4: blocked member
            ("一天一次", p[3], sku, 1),  # row 5: granted
            ("一天一次", p[3], other_sku, 1),  # row 6: the same member again today: over the limit
            ("先到", p[4], scarce_sku, 1),  # row 7: the last code
            ("后到", p[5], scarce_sku, 1),  # row 8: none left
        ],
    )
    with tenant_context(shop.tenant.id):
        outcome = await bulk_run.run_bulk_grant(kernel, bulk_id, chunk_rows=50)  # one chunk
        await engine.settle()
    assert (outcome.granted, outcome.failed) == (3, 4)
    assert outcome.errors == {"risk_refused": 2, "member_blocked": 1, "out_of_stock": 1}
    assert await row_states(kernel, shop.tenant.id, bulk_id) == {
        2: ("granted", None),
        3: ("failed", "risk_refused"),
        4: ("failed", "member_blocked"),
        5: ("granted", None),
        6: ("failed", "risk_refused"),
        7: ("granted", None),
        8: ("failed", "out_of_stock"),
    }
    assert await count(kernel, shop.tenant.id, GrantItem) == 3
    assert await count(kernel, shop.tenant.id, Code, Code.state == "issued") == 3
    assert (
        await count(kernel, shop.tenant.id, BulkGrantKey) == 3
    )  # failed rows hold no key: a rerun may grant them
    reasons = await count(kernel, shop.tenant.id, RiskRefusal, RiskRefusal.action == "grant")
    assert reasons == 2  # the refusals are on record as for single grants


async def test_a_chunk_that_breaks_as_a_whole_is_granted_row_by_row(client, kernel, shop, monkeypatch):
    sku, _ = await new_product(kernel, shop.tenant.id, 20)
    p = phones(8)
    bulk_id = await prepared(client, kernel, shop, [(f"员工{i}", n, sku, 1) for i, n in enumerate(p)])
    real_create = grant_services.create_grant

    async def broken_batch(*_: Any, **__: Any) -> Any:
        raise RuntimeError("the batch statement broke")

    async def create_failing_for_one(session: Any, kernel_: Any, data: Any, **kw: Any) -> Any:
        if data.phone == f"+86{p[3]}":
            raise RuntimeError("this row breaks whatever is done with it")
        return await real_create(session, kernel_, data, **kw)

    monkeypatch.setattr(grant_services, "grant_many", broken_batch)
    monkeypatch.setattr(grant_services, "create_grant", create_failing_for_one)
    with tenant_context(shop.tenant.id):
        outcome = await bulk_run.run_bulk_grant(kernel, bulk_id, chunk_rows=5)
    assert (outcome.status, outcome.granted, outcome.failed) == ("done", 7, 1)
    states = await row_states(kernel, shop.tenant.id, bulk_id)
    assert states[5] == ("failed", "grant_failed")
    assert sum(1 for s, _ in states.values() if s == "granted") == 7
    assert await count(kernel, shop.tenant.id, Grant) == 7
    assert await count(kernel, shop.tenant.id, Code, Code.state == "issued") == 7


async def test_a_run_stopped_in_the_middle_of_a_chunk_loses_nothing_and_doubles_nothing(
    client, kernel, shop, monkeypatch
):
    sku, _ = await new_product(kernel, shop.tenant.id, 40)
    bulk_id = await prepared(
        client, kernel, shop, [(f"员工{i}", n, sku, 1) for i, n in enumerate(phones(30))]
    )
    real_many = grant_services.grant_many
    calls = 0
    inside = asyncio.Event()

    async def stalls_in_the_second_chunk(*args: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        done = await real_many(*args, **kw)  # the chunk's grants are written, not yet committed
        if calls == 2:
            inside.set()
            await asyncio.sleep(3600)  # … and the worker dies here
        return done

    monkeypatch.setattr(grant_services, "grant_many", stalls_in_the_second_chunk)
    with tenant_context(shop.tenant.id):
        run = asyncio.create_task(bulk_run.run_bulk_grant(kernel, bulk_id, chunk_rows=10))
        await asyncio.wait_for(inside.wait(), 60)
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
    states = await row_states(kernel, shop.tenant.id, bulk_id)
    assert sorted(s for s, _ in states.values()).count("granted") == 10  # the first chunk, whole
    assert sorted(s for s, _ in states.values()).count("pending") == 20  # the second chunk: nothing of it
    assert await count(kernel, shop.tenant.id, Grant) == 10
    assert await count(kernel, shop.tenant.id, BulkGrantKey) == 10
    assert await count(kernel, shop.tenant.id, Code, Code.state == "issued") == 10

    monkeypatch.setattr(grant_services, "grant_many", real_many)
    with tenant_context(shop.tenant.id):
        outcome = await bulk_run.run_bulk_grant(kernel, bulk_id, chunk_rows=10)  # the redelivery
    assert (outcome.status, outcome.granted, outcome.failed) == ("done", 30, 0)
    assert await count(kernel, shop.tenant.id, Grant) == 30
    assert await count(kernel, shop.tenant.id, GrantItem) == 30
    assert await count(kernel, shop.tenant.id, Code, Code.state == "issued") == 30
    with tenant_context(shop.tenant.id):
        async with kernel.db.transaction() as db:
            members = (await db.execute(select(Grant.member_id))).scalars().all()
    assert len(set(members)) == 30  # each recipient once


_KILLED_WORKER = """
import asyncio, os, sys, uuid
from pathlib import Path

from core.app import create_app
from core.bulk_grants import run
from core.db.context import tenant_context
from core.grants import services as grant_services
from core.settings import load_settings

real_many = grant_services.grant_many
calls = 0


async def stall_in_second_chunk(*args, **kw):
    global calls
    calls += 1
    done = await real_many(*args, **kw)
    if calls == 2:
        Path(sys.argv[3]).write_text("inside")
        await asyncio.sleep(3600)
    return done


async def main():
    grant_services.grant_many = stall_in_second_chunk
    kernel = create_app(load_settings()).state.kernel
    with tenant_context(uuid.UUID(sys.argv[1])):
        await run.run_bulk_grant(kernel, uuid.UUID(sys.argv[2]), chunk_rows=10)


asyncio.run(main())
"""


async def test_a_worker_killed_mid_chunk_loses_nothing_and_doubles_nothing(
    client, kernel, settings, shop, test_env, tmp_path
):
    if test_env.backend != "postgresql":
        pytest.skip("a second process on the same database: PostgreSQL")
    sku, _ = await new_product(kernel, shop.tenant.id, 40)
    bulk_id = await prepared(
        client, kernel, shop, [(f"员工{i}", n, sku, 1) for i, n in enumerate(phones(30))]
    )
    config = tmp_path / "settings.json"
    config.write_bytes(msgspec.json.encode({"kaquan": settings}))
    marker = tmp_path / "inside"
    env = {**os.environ, "KAQUAN_CONFIG": str(config)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _KILLED_WORKER,
        str(shop.tenant.id),
        str(bulk_id),
        str(marker),
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        for _ in range(1200):  # a condition wait (up to two minutes), not a timing assertion
            if marker.exists() or proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        assert marker.exists(), (
            (await proc.stderr.read()).decode()[-3000:] if proc.returncode is not None else ""
        )
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)  # kill -9 in the middle of the second chunk
        await proc.wait()
    states = await row_states(kernel, shop.tenant.id, bulk_id)
    assert [s for s, _ in states.values()].count("granted") == 10  # the first chunk, whole
    assert [s for s, _ in states.values()].count("pending") == 20  # nothing of the second chunk
    assert await count(kernel, shop.tenant.id, Grant) == 10
    assert await count(kernel, shop.tenant.id, Code, Code.state == "issued") == 10

    with tenant_context(shop.tenant.id):
        outcome = await bulk_run.run_bulk_grant(kernel, bulk_id, chunk_rows=10)  # the redelivery
    assert (outcome.status, outcome.granted, outcome.failed) == ("done", 30, 0)
    assert await count(kernel, shop.tenant.id, Grant) == 30
    assert await count(kernel, shop.tenant.id, BulkGrantKey) == 30
    assert await count(kernel, shop.tenant.id, Code, Code.state == "issued") == 30
