"""The channel jobs as the worker runs them: the coalesced push, the quota resize, and the periodic sweep."""

from __future__ import annotations

import asyncio
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


async def test_a_generated_batch_grows_share_quotas_through_the_import_pipeline(shop, client, settings):
    from tests.integration.inventory.test_import_api import worker_for

    s = await shop.stock(2, with_pin=False)
    account = await add_account(shop)
    li = await shop.run(lambda db: services.create_listing(
        db, listing_in(account, s.product_id, sku="G-1", quota={"kind": "share", "value": 5000})))
    assert li.quota == 1
    async with worker_for(settings):
        r = await shop.post("/api/v1/code-generations", {"product_id": str(s.product_id), "count": 40,
                                                         "unit_cost": 0, "expires_at": "2032-06-30"})
        assert r.status_code == 202, r.text
        for _ in range(1200):  # a condition wait (up to two minutes), not a timing assertion
            job = (await shop.get(f"/api/v1/jobs/{r.json()['job_id']}")).json()
            if job["status"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.1)
    assert job["status"] == "succeeded", job
    got = await shop.run(lambda db: services.get_listing(db, li.id))
    assert got.quota == 21 and got.sync == "pending"  # half of 42, in the stocking transaction
