"""The channel jobs as the worker runs them: the coalesced push, the quota resize, and the periodic sweep."""

from __future__ import annotations

import uuid

from core.channels import services
from core.channels.jobs import push_channel_stock, rebalance_channel_quotas, sync_channel_stock
from core.db.context import tenant_context
from core.inventory.allocation import allocate
from core.jobs.context import JobEnv, MessageInfo, reset_job_context, set_job_context
from tests.integration.channels.conftest import add_account
from tests.integration.channels.test_quotas_and_prices import listing_in


async def _as_worker(settings, kernel, host, tenant_id, actor, fn, *args):
    env = JobEnv(settings, kernel.keys, host)
    info = MessageInfo("m-" + uuid.uuid4().hex, actor, tenant_id, f"{actor}:{uuid.uuid4()}", None, 0)
    tokens = set_job_context(env, info)
    try:
        with tenant_context(tenant_id):
            await fn(*args)
    finally:
        reset_job_context(tokens)


async def test_jobs_push_resize_and_sweep(shop, settings, kernel, host, channel):
    s = await shop.stock(10)
    account = await add_account(shop)
    li = await shop.run(lambda db: services.create_listing(
        db, listing_in(account, s.product_id, sku="J-1", quota={"kind": "share", "value": 5000})))
    assert li.quota == 5

    await _as_worker(settings, kernel, host, shop.id, "push_channel_stock", push_channel_stock, str(account))
    assert channel.stock == {"J-1": 5}

    await shop.run(lambda db: allocate(db, s.product_id, 6, "grant"))
    await _as_worker(settings, kernel, host, shop.id, "rebalance_channel_quotas", rebalance_channel_quotas,
                     str(s.product_id))
    assert (await shop.run(lambda db: services.get_listing(db, li.id))).quota == 2  # half of the 4 left

    await shop.stock(6, product_id=s.product_id)  # stocked outside the import pipeline: the sweep catches it
    await _as_worker(settings, kernel, host, shop.id, "sync_channel_stock", sync_channel_stock)
    await _as_worker(settings, kernel, host, shop.id, "push_channel_stock", push_channel_stock, str(account))
    assert channel.stock == {"J-1": 5}
    got = await shop.run(lambda db: services.get_listing(db, li.id))
    assert got.quota == 5 and got.sync == "synced"
