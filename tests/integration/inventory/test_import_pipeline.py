"""The import job itself: one transaction (an injected failure leaves nothing), runs once, respects the plan
quota, keeps plaintext out of the database and the logs, and the ``kaquan codes import`` command."""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import uuid
from typing import Any

import pytest
import structlog
from click.testing import CliRunner
from sqlalchemy import select, update

from core.audit.models import AuditEvent
from core.catalog.models import Product
from core.db.base import Base
from core.db.context import tenant_context
from core.errors import QuotaExceeded, ValidationFailed
from core.inventory.importing import bulk, services
from core.inventory.importing.schemas import ImportRequest
from core.inventory.models import Batch, Code, CodeImport
from core.jobs import progress
from core.logging import configure_logging
from tests.integration.inventory.test_import_api import count, csv_bytes, new_product, pins, plain_codes


async def validated(kernel, tenant_id: uuid.UUID, product_id: uuid.UUID, data: bytes, name: str = "codes.csv",
                    **fields: Any) -> CodeImport:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            request = services.to_request({"product_id": str(product_id), **fields}, ImportRequest)
            return await services.create_import(db, kernel.keys, io.BytesIO(data), name, request, max_bytes=10**7)


async def confirmed(kernel, tenant_id: uuid.UUID, import_id: uuid.UUID, mode: str = "valid_only") -> uuid.UUID:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            _imp, job = await services.confirm_import(db, import_id, mode, enqueue=False)  # type: ignore[arg-type]
            return job.id


async def run(kernel, tenant_id: uuid.UUID, import_id: uuid.UUID, **kw: Any):
    with tenant_context(tenant_id):
        return await services.run_import(kernel.db, kernel.keys, import_id, **kw)


@pytest.fixture
async def tenant(make_tenant):
    return await make_tenant(plan="growth")


async def test_failure_injected_mid_import_leaves_no_codes_and_no_batch(kernel, tenant, monkeypatch):
    product = await new_product(kernel, tenant.id)
    rows = list(zip(plain_codes(350), pins(350), strict=True))
    imp = await validated(kernel, tenant.id, product, csv_bytes(["卡号", "卡密"], rows))
    job_id = await confirmed(kernel, tenant.id, imp.id)
    monkeypatch.setattr(services, "INSERT_CHUNK", 100)
    real, calls = bulk.write_codes, []

    async def flaky(*args: Any, **kwargs: Any) -> int:
        calls.append(len(args[1].ids))
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return await real(*args, **kwargs)

    monkeypatch.setattr(bulk, "write_codes", flaky)
    seen: list[tuple[int, int]] = []
    outcome = await run(kernel, tenant.id, imp.id, on_progress=lambda d, t: seen.append((d, t)))
    assert outcome.status == "failed" and outcome.error_code == "import_failed" and "RuntimeError" in outcome.error_en
    assert calls == [100, 100, 100] and seen[-1] == (200, 350)  # two chunks were in before the failure
    assert await count(kernel, tenant.id, Code, Code.product_id == product) == 0
    assert await count(kernel, tenant.id, Batch, Batch.product_id == product) == 0
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            row = await services.get_import(db, imp.id)
            job = await progress.get(db, job_id)
    assert row.status == "failed" and row.batch_id is None and "disk on fire" not in (row.error or "")
    assert row.staged is not None  # still staged: the user can confirm again
    assert job.status == "failed" and job.message.startswith("import_failed")

    monkeypatch.setattr(bulk, "write_codes", real)
    await confirmed(kernel, tenant.id, imp.id)
    outcome = await run(kernel, tenant.id, imp.id)
    assert outcome.status == "imported" and outcome.imported == 350
    assert await count(kernel, tenant.id, Code, Code.product_id == product) == 350


async def test_the_job_runs_once(kernel, tenant):
    product = await new_product(kernel, tenant.id)
    imp = await validated(kernel, tenant.id, product, csv_bytes(["卡号", "卡密"], list(zip(plain_codes(40), pins(40), strict=True))))
    job_id = await confirmed(kernel, tenant.id, imp.id)
    first = await run(kernel, tenant.id, imp.id)
    second = await run(kernel, tenant.id, imp.id)
    assert first.status == "imported" and second.status == "skipped" and second.batch_id == first.batch_id
    assert await count(kernel, tenant.id, Batch, Batch.product_id == product) == 1
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            job = await progress.get(db, job_id)
            events = (await db.execute(select(AuditEvent).where(AuditEvent.action == "batch.imported",
                                                                AuditEvent.object_id == str(first.batch_id)))).scalars().all()
    assert job.status == "succeeded" and job.result["imported"] == 40
    assert len(events) == 1 and events[0].data["codes"] == 40 and events[0].data["unit_cost"] == 0
    # confirming an imported import is refused; confirming a queued one twice returns the same job
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            with pytest.raises(Exception, match="already done"):
                await services.confirm_import(db, imp.id, "valid_only", enqueue=False)


async def test_concurrent_runs_import_once(kernel, tenant, test_env):
    if test_env.backend != "postgresql":
        pytest.skip("concurrent writers: PostgreSQL")
    product = await new_product(kernel, tenant.id)
    imp = await validated(kernel, tenant.id, product, csv_bytes(["卡号", "卡密"], list(zip(plain_codes(500), pins(500), strict=True))))
    await confirmed(kernel, tenant.id, imp.id)
    outcomes = await asyncio.gather(*(run(kernel, tenant.id, imp.id) for _ in range(3)))
    assert sorted(o.status for o in outcomes) == ["imported", "skipped", "skipped"]
    assert await count(kernel, tenant.id, Code, Code.product_id == product) == 500
    assert await count(kernel, tenant.id, Batch, Batch.product_id == product) == 1


async def test_an_import_leaves_fresh_planner_statistics(kernel, tenant, test_env, owner_engine):
    """Without statistics the FEFO pick sorts every available code (docs/benchmarks.md, allocation)."""
    if test_env.backend != "postgresql":
        pytest.skip("planner statistics: PostgreSQL")
    from sqlalchemy import text

    async with owner_engine.connect() as conn:
        before = (await conn.execute(text("SELECT pg_stat_get_analyze_count('codes'::regclass)"))).scalar_one()
    product = await new_product(kernel, tenant.id)
    imp = await validated(kernel, tenant.id, product, csv_bytes(["卡号", "卡密"], list(zip(plain_codes(30), pins(30), strict=True))))
    await confirmed(kernel, tenant.id, imp.id)
    assert (await run(kernel, tenant.id, imp.id)).status == "imported"
    async with owner_engine.connect() as conn:
        after = (await conn.execute(text("SELECT pg_stat_get_analyze_count('codes'::regclass)"))).scalar_one()
    assert after == before + 1  # the app role ran ANALYZE through kaquan_analyze()


async def test_duplicates_across_batches_and_codes_taken_since_validation(kernel, tenant):
    product = await new_product(kernel, tenant.id)
    first = list(zip(plain_codes(10), pins(10), strict=True))
    imp = await validated(kernel, tenant.id, product, csv_bytes(["卡号", "卡密"], first))
    await confirmed(kernel, tenant.id, imp.id)
    assert (await run(kernel, tenant.id, imp.id)).imported == 10

    # another product, another batch: a code the tenant holds anywhere is a duplicate
    other = await new_product(kernel, tenant.id)
    fresh = list(zip(plain_codes(5), pins(5), strict=True))
    imp2 = await validated(kernel, tenant.id, other, csv_bytes(["卡号", "卡密"], first[:3] + fresh))
    assert imp2.report["problem_counts"] == {"duplicate_existing": 3} and imp2.valid_rows == 5

    # two uploads of the same new codes validate cleanly; the second confirmed finds them taken
    race = list(zip(plain_codes(6), pins(6), strict=True))
    a = await validated(kernel, tenant.id, other, csv_bytes(["卡号", "卡密"], race))
    b = await validated(kernel, tenant.id, other, csv_bytes(["卡号", "卡密"], race[:2] + fresh[:1]))
    c = await validated(kernel, tenant.id, other, csv_bytes(["卡号", "卡密"], race[2:4]))
    await confirmed(kernel, tenant.id, a.id)
    assert (await run(kernel, tenant.id, a.id)).imported == 6
    await confirmed(kernel, tenant.id, b.id)
    out_b = await run(kernel, tenant.id, b.id)
    assert (out_b.status, out_b.imported, out_b.skipped_duplicates) == ("imported", 1, 2)
    await confirmed(kernel, tenant.id, c.id, "all_or_nothing")
    out_c = await run(kernel, tenant.id, c.id)
    assert (out_c.status, out_c.error_code) == ("failed", "import_duplicates_appeared")
    assert await count(kernel, tenant.id, Code, Code.product_id == other) == 7


async def test_plan_quota_of_stored_codes(kernel, client, operator, make_tenant):
    code = f"q{secrets.token_hex(3)}"
    r = await client.post("/api/platform/v1/plans", headers=operator.headers,
                          json={"code": code, "name": "Quota", "max_stored_codes": 12})
    assert r.status_code == 201, r.text
    small = await make_tenant(plan=code)
    product = await new_product(kernel, small.id, code_format="number")
    imp = await validated(kernel, small.id, product, "\n".join(plain_codes(10)).encode(), "a.txt")
    await confirmed(kernel, small.id, imp.id)
    assert (await run(kernel, small.id, imp.id)).imported == 10
    imp = await validated(kernel, small.id, product, "\n".join(plain_codes(3)).encode(), "b.txt")
    with pytest.raises(QuotaExceeded) as info:
        await confirmed(kernel, small.id, imp.id)
    assert info.value.extra == {"quota": "stored_codes", "limit": 12, "used": 10, "adding": 3}
    with tenant_context(small.id), pytest.raises(QuotaExceeded):
        async with kernel.db.transaction() as db:
            await services.start_generation(db, services.to_request({"product_id": str(product), "count": 5},
                                                                   services.GenerationRequest))


async def test_row_expiry_overrides_batch_expiry_and_reusable_codes(kernel, tenant):
    product = await new_product(kernel, tenant.id, kind="reusable_code", code_format="number", max_uses=5)
    a, b = plain_codes(2)
    imp = await validated(kernel, tenant.id, product, csv_bytes(["code", "expiry"], [(a, "2033-03-03"), (b, "")]),
                          expires_at="2034-04-04", unit_cost=120, currency="USD")
    await confirmed(kernel, tenant.id, imp.id)
    outcome = await run(kernel, tenant.id, imp.id)
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            codes = (await db.execute(select(Code).where(Code.batch_id == outcome.batch_id))).scalars().all()
            batch = (await db.execute(select(Batch).where(Batch.id == outcome.batch_id))).scalar_one()
    assert sorted(c.expires_at.year for c in codes) == [2033, 2034]
    assert {c.uses_left for c in codes} == {5} and {c.has_pin for c in codes} == {False}
    assert (batch.unit_cost, batch.currency, batch.expires_at.year) == (120, "USD", 2034)


async def test_no_plaintext_in_the_database_or_the_logs(kernel, tenant, owner_engine, settings, caplog):
    product = await new_product(kernel, tenant.id)
    numbers, secret_pins = plain_codes(25, "SECRETNUM"), pins(25)
    rows = [*zip(numbers, secret_pins, strict=True), ("BAD CODE 77", "x"), (numbers[0], "dup")]
    buffer = io.StringIO()
    configure_logging("DEBUG", json=True)
    processors = structlog.get_config()["processors"]
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(buffer), processors=processors)
    caplog.set_level(logging.DEBUG)
    try:
        imp = await validated(kernel, tenant.id, product, csv_bytes(["卡号", "卡密"], rows))
        await confirmed(kernel, tenant.id, imp.id)
        outcome = await run(kernel, tenant.id, imp.id)
        assert outcome.imported == 25
        failing = await validated(kernel, tenant.id, product, csv_bytes(["卡号", "卡密"], [(plain_codes(1, "SECRETNUM")[0], "pin9")]))
        await confirmed(kernel, tenant.id, failing.id)
        with tenant_context(tenant.id):
            async with kernel.db.transaction() as db:  # make the import fail: its product is archived meanwhile
                await db.execute(update(Product).where(Product.id == product).values(status="archived"))
        assert (await run(kernel, tenant.id, failing.id)).status == "failed"
    finally:
        configure_logging(settings.log_level, settings.log_json)
    logs = buffer.getvalue() + caplog.text
    assert "code_import_validated" in logs and "code_import_done" in logs and "code_import_failed" in logs
    secrets_ = numbers + secret_pins
    for s in secrets_:
        assert s not in logs

    # every tenant table as the owner (no RLS): neither the number nor the PIN, as text or as bytes
    found: list[str] = []
    async with owner_engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if "tenant_id" not in table.c:
                continue
            result = await conn.execute(select(table).where(table.c.tenant_id == tenant.id))
            for row in result:
                for value in row:
                    blob = value if isinstance(value, bytes) else str(value).encode()
                    found += [f"{table.name}: {s}" for s in secrets_ if s.encode() in blob]
    assert found == []
    assert await count(kernel, tenant.id, Code, Code.product_id == product) == 25


async def test_cli_codes_import_prints_report_and_batch(kernel, tenant, settings, monkeypatch, tmp_path):
    from core.cli import main

    product = await new_product(kernel, tenant.id, sku=f"VIP-{secrets.token_hex(3)}")
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            sku = (await db.execute(select(Product.sku).where(Product.id == product))).scalar_one()
    numbers = plain_codes(12)
    path = tmp_path / "供应商.csv"
    path.write_bytes(csv_bytes(["卡号", "卡密", "有效期"],
                               [(n, p, "2031-05-05") for n, p in zip(numbers, pins(12), strict=True)] + [("", "x", "")],
                               encoding="gbk"))
    env = {
        "KAQUAN_DATABASE_URL": settings.database_url,
        "KAQUAN_DATA_DIR": settings.data_dir,
        "KAQUAN_MASTER_KEY": settings.master_key,
        "KAQUAN_REDIS_URL": "",
        "KAQUAN_LOG_LEVEL": "WARNING",
        "LANG": "en_US.UTF-8",
    }
    runner = CliRunner()
    args = ["codes", "import", "--tenant", tenant.slug, "--product", sku, "--file", str(path), "--supplier", "CLI",
            "--unit-cost", "300", "--purchase-ref", "PO-CLI", "--yes"]
    result = await asyncio.to_thread(runner.invoke, main, args, env=env)
    assert result.exit_code == 0, result.output
    assert "imported 12 code(s) into batch B-" in result.output and "empty" in result.output
    for n in numbers:
        assert n not in result.output
    assert await count(kernel, tenant.id, Code, Code.product_id == product) == 12
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            batch = (await db.execute(select(Batch).where(Batch.product_id == product))).scalar_one()
    assert (batch.supplier, batch.unit_cost, batch.purchase_ref) == ("CLI", 300, "PO-CLI")

    result = await asyncio.to_thread(
        runner.invoke, main, [*args[:5], "NO-SUCH-SKU", *args[6:]], env=env
    )
    assert result.exit_code == 1 and "product_not_found" in result.output
    path.write_bytes(b"")
    result = await asyncio.to_thread(runner.invoke, main, args, env=env)
    assert result.exit_code == 1 and "import_empty" in result.output
    path.write_bytes(csv_bytes(["卡号", "卡密"], [(plain_codes(1)[0], "pin1"), ("BAD\x07CODE", "pin2")]))
    result = await asyncio.to_thread(runner.invoke, main, [*args, "--mode", "all_or_nothing"], env=env)
    assert result.exit_code == 1 and "import_has_problems" in result.output
    assert await count(kernel, tenant.id, Code, Code.product_id == product) == 12


async def test_validation_failure_of_batch_fields_is_a_field_error(kernel, tenant):
    product = await new_product(kernel, tenant.id)
    with pytest.raises(ValidationFailed) as info:
        await validated(kernel, tenant.id, product, b"code\nAAAA1111\n", unit_cost="-1")
    assert info.value.errors[0].field == "unit_cost"
