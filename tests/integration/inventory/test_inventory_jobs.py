"""The scheduler's inventory jobs run per tenant through the job environment and do their work."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from core.db.context import tenant_context
from core.events.models import Event
from core.inventory.jobs import check_stock_alerts_job, expire_codes_job, sweep_reservations_job
from core.inventory.models import Code, WriteOff
from core.jobs.context import JobEnv, reset_job_context, set_job_context
from core.jobs.registry import load_job_modules
from core.jobs.scheduler import PERIODIC
from core.plugin_host import load_plugins
from tests.integration.inventory.stocking import stock_product


@pytest.fixture
def job_env(settings, kernel):
    tokens = set_job_context(JobEnv(settings, kernel.keys, load_plugins()), None)
    yield
    reset_job_context(tokens)


def test_inventory_jobs_are_declared_and_scheduled():
    jobs = load_job_modules()
    names = {p.actor for p in PERIODIC}
    for name in ("expire_codes", "sweep_reservations", "check_stock_alerts"):
        assert name in jobs and name in names


async def test_jobs_expire_sweep_and_alert_for_the_tenant_in_context(kernel, make_tenant, job_env):
    tenant = await make_tenant()
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    s = await stock_product(kernel, tenant.id, 10, expiries=[past] * 9 + [None], unit_cost=250)
    with tenant_context(tenant.id):
        await expire_codes_job()
        await sweep_reservations_job()
        await check_stock_alerts_job()
        async with kernel.db.transaction() as db:
            states = sorted((await db.execute(select(Code.state).where(Code.product_id == s.product_id))).scalars())
            writeoff = (await db.execute(select(WriteOff).where(WriteOff.product_id == s.product_id))).scalar_one()
            events = list((await db.execute(select(Event.type).where(Event.object_id == str(s.product_id)))).scalars())
    assert states == ["available"] + ["expired"] * 9
    assert (writeoff.quantity, writeoff.cost, writeoff.reason) == (9, 2250, "expired")
    assert "stock.low" in events  # 1 of 10 left is at the 10% watermark
