"""``kaquan demo`` shows consignment working: the demo tenant's sandbox shop has orders that arrived by
polling and were fulfilled from the listing's quota and delivered to the shop."""

from __future__ import annotations

import asyncio
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select

from core.channel_orders.models import ChannelOrder, ChannelOrderCode
from core.db.context import tenant_context
from core.settlement.models import ReconRun, Settlement
from core.splits.models import SplitRule
from tenants.models import Tenant


async def test_kaquan_demo_shows_sandbox_orders_fulfilled(settings: Any, kernel: Any) -> None:
    from core.cli import main

    env = {
        "KAQUAN_DATABASE_URL": settings.database_url,
        "KAQUAN_DATA_DIR": settings.data_dir,
        "KAQUAN_MASTER_KEY": settings.master_key,
        "KAQUAN_REDIS_URL": "",
        "KAQUAN_LOG_LEVEL": "WARNING",
    }
    first = await asyncio.to_thread(CliRunner().invoke, main, ["demo"], env=env)
    assert first.exit_code == 0, first.output
    again = await asyncio.to_thread(CliRunner().invoke, main, ["demo"], env=env)  # a second run adds nothing
    assert again.exit_code == 0, again.output
    async with kernel.db.transaction() as db:
        tenant_id = (await db.execute(select(Tenant.id).where(Tenant.slug == "demo"))).scalar_one()
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            orders = list((await db.execute(select(ChannelOrder))).scalars())
            codes = list((await db.execute(select(ChannelOrderCode.state))).scalars())
    assert orders and {o.status for o in orders} == {"fulfilled"}
    assert {o.source for o in orders} == {"poll"}
    assert codes and set(codes) == {"delivered"}
    if "sandbox channel" in first.output:  # this run seeded the shop (an earlier test may have)
        assert f"{len(orders)} of {len(orders)} orders fulfilled" in first.output
    assert "sandbox channel" not in again.output
    if "sandbox channel" in first.output:  # and settled: the statement fetched, this month reconciled
        with tenant_context(tenant_id):
            async with kernel.db.transaction() as db:
                runs = list((await db.execute(select(ReconRun))).scalars())
                settlements = list((await db.execute(select(Settlement.status))).scalars())
                rules = list((await db.execute(select(SplitRule.subject))).scalars())
        assert len(runs) == 1 and runs[0].counts.get("matched") == len(orders), runs[0].counts
        assert settlements == ["reconciled"]
        assert rules == ["connector:sandbox"]
        assert f"{len(orders)} of {len(orders)} statement lines matched, reconciled" in first.output
