"""Limits hold under concurrency: many simultaneous admits for one member against a limit of 5."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select

from core.db.context import tenant_context
from core.risk.gate import RiskSubject
from core.risk.models import RiskRefusal
from tests.integration.risk.helpers import attempt, db_counters, set_rules


async def _storm(kernel, settings, tenant_id, n: int) -> Counter[str | None]:
    subject = RiskSubject(member_id=uuid.uuid4(), ip="198.51.100.1")
    results = await asyncio.gather(
        *(attempt(kernel, settings, tenant_id, "grant", subject) for _ in range(n))
    )
    return Counter(results)


async def _refusals(kernel, tenant_id) -> int:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return (await db.execute(select(func.count()).select_from(RiskRefusal))).scalar_one()


async def test_1000_concurrent_admits_on_redis_admit_exactly_5(kernel, settings, test_env, make_tenant):
    if test_env.backend != "postgresql" or not settings.redis_url:
        pytest.skip("needs PostgreSQL and Redis")
    t = await make_tenant()
    await set_rules(kernel, t.id, ("grant", "member", "month", 5))
    results = await _storm(kernel, settings, t.id, 1000)
    assert results == Counter({None: 5, "limit_member_month": 995})
    assert await _refusals(kernel, t.id) == 995


async def test_1000_concurrent_admits_on_postgres_counters_admit_exactly_5(
    kernel, settings, test_env, make_tenant
):
    if test_env.backend != "postgresql":
        pytest.skip("needs PostgreSQL")
    t = await make_tenant()
    await set_rules(kernel, t.id, ("grant", "member", "month", 5), ("grant", "ip", "day", 1000))
    results = await _storm(kernel, db_counters(settings), t.id, 1000)
    assert results == Counter({None: 5, "limit_member_month": 995})
    assert await _refusals(kernel, t.id) == 995


async def test_concurrent_admits_on_sqlite_counters_admit_exactly_5(kernel, settings, test_env, make_tenant):
    if test_env.backend != "sqlite":
        pytest.skip("the SQLite counter path")
    t = await make_tenant()
    await set_rules(kernel, t.id, ("grant", "member", "month", 5), ("grant", "ip", "day", 1000))
    results = await _storm(kernel, settings, t.id, 200)
    assert results == Counter({None: 5, "limit_member_month": 195})
    assert await _refusals(kernel, t.id) == 195
