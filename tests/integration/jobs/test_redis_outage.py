"""Redis away (issue 9, item 24): rate limits fail open to a local limit, a committed grant is answered
201 and delivered once Redis is back, a lost job is re-sent within minutes, keys use the namespace."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets

import dramatiq
import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select

from core.app import create_app
from core.db.context import tenant_context
from core.grants.models import Grant
from core.http.ratelimit import FALLBACKS, RateLimiter
from core.http.sessions import ResilientRedisStore, SessionStoreUnavailable
from core.jobs.context import close_thread_loop
from core.jobs.models import OutboxMessage
from core.jobs.registry import declare_actors
from core.jobs.relay import REDELIVER_AFTER, relay_once
from core.jobs.runtime import JobRuntime
from core.kernel import Kernel
from tests.integration.grants.shops import open_shop
from tests.integration.jobs.conftest import FAR, held_invite, outbox_row
from tests.integration.jobs.redis_server import closed_port_url, private_redis

WINDOWS = [("tenant:t1", 3), ("client:t1:c1", 10)]


def _count() -> float:
    return FALLBACKS._value.get()


async def test_rate_limits_fail_open_to_a_local_limit_when_redis_is_refused():
    limiter = RateLimiter(closed_port_url(), namespace="ns-" + secrets.token_hex(3))
    before = _count()
    try:
        decisions = [await limiter.hit(WINDOWS, "t1") for _ in range(4)]
    finally:
        await limiter.close()
    assert [d.allowed for d in decisions] == [True, True, True, False]  # the same limit, counted locally
    assert decisions[-1].limit == 3
    assert dict((k.decode(), v.decode()) for k, v in decisions[-1].headers())["retry-after"]
    assert _count() - before == 4


async def test_rate_limits_survive_redis_going_away_and_use_it_again_when_back(monkeypatch):
    monkeypatch.setattr("core.http.ratelimit.REDIS_RETRY_SECONDS", 0.0)
    namespace = "ns-" + secrets.token_hex(3)
    with private_redis() as (url, proc):
        limiter = RateLimiter(url, namespace=namespace)
        try:
            first = await limiter.hit(WINDOWS, "t1")
            assert first.allowed and first.remaining == 2
            probe = aioredis.from_url(url)
            keys = sorted(k.decode() for k in await probe.keys("*"))
            await probe.aclose()
            assert keys == [
                f"{namespace}:ratelimit:{{t1}}:client:t1:c1:minute",
                f"{namespace}:ratelimit:{{t1}}:tenant:t1:minute",
            ]
            proc.kill()  # Redis goes away mid-traffic
            proc.wait(timeout=10)
            before = _count()
            after = [await limiter.hit(WINDOWS, "t1") for _ in range(4)]
            assert [d.allowed for d in after] == [True, True, True, False]
            assert _count() - before == 4
        finally:
            await limiter.close()


async def test_api_calls_are_answered_while_the_limiter_redis_is_away(
    client, app, make_tenant, make_api_client
):
    tenant = await make_tenant()
    creds = await make_api_client(tenant)
    original = app.state.rate_limiter
    app.state.rate_limiter = RateLimiter(closed_port_url(), namespace="x")
    try:
        r = await client.get("/api/v1/products", headers=creds.headers)
    finally:
        await app.state.rate_limiter.close()
        app.state.rate_limiter = original
    assert r.status_code == 200, r.text
    assert r.headers["ratelimit-limit"]


async def test_a_grant_committed_while_redis_is_away_is_answered_201_and_delivered_when_it_is_back(
    settings, app, kernel, client, make_tenant, make_api_client, jobs
):
    """Service mode with every Redis use (limiter, broker, sessions) pointing at a closed port."""
    shop = await open_shop(client, kernel, make_tenant, make_api_client)
    stocked = await shop.stock(1)
    down = msgspec.structs.replace(settings, redis_url=closed_port_url())
    outage_app = create_app(down)
    await app.state.jobs.relay.stop()  # only the outage app's relay may see the new row
    try:
        await _grant_during_outage(outage_app, kernel, shop, stocked, jobs)
    finally:
        app.state.jobs.relay.start()


async def _grant_during_outage(outage_app, kernel, shop, stocked, jobs) -> None:
    async with outage_app.lifespan():  # its relay fails to reach the broker and backs off
        transport = httpx.ASGITransport(app=outage_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as c:
            # a console page needs its session: refused before any work, never a 500
            page = await c.get("/console", cookies={"kq_session": "a" * 32})
            assert page.status_code == 503 and page.headers["retry-after"], page.text
            r = await c.post(
                "/api/v1/grants",
                json={"product_id": str(stocked.product_id), "phone": "13800001111"},
                headers={**shop.headers, "Idempotency-Key": secrets.token_hex(8)},
            )
            assert r.status_code == 201, r.text
            grant_id = r.json()["id"]
            key = f"deliver_grant:{grant_id}"
            # the outage app's relay tries the dead broker and keeps the row (a pass over this row alone:
            # the background relay goes oldest first, and a shared test database holds other tenants' rows)
            row = None
            for _ in range(50):  # (if the background pass holds the row right now, ours skips it: look again)
                failed = await relay_once(
                    kernel.db, outage_app.state.jobs.broker, tenant_ids=[shop.id], business_keys=[key]
                )
                assert failed.enqueued == 0
                with tenant_context(shop.id):
                    async with kernel.db.transaction() as db:
                        row = (
                            await db.execute(select(OutboxMessage).where(OutboxMessage.business_key == key))
                        ).scalar_one()
                if row.attempts:
                    break
                await asyncio.sleep(0.1)
    assert row is not None and row.status == "pending" and row.attempts >= 1
    assert "ConnectionError" in (row.last_error or "")
    # Redis is back: the relay sends the kept row and the delivery goes out once.
    report = await relay_once(kernel.db, jobs.broker, now=FAR, tenant_ids=[shop.id], business_keys=[key])
    assert report.enqueued == 1
    await jobs.drain()
    assert len(jobs.recorder.to("+8613800001111")) == 1
    with tenant_context(shop.id):
        async with kernel.db.transaction() as db:
            grant = (await db.execute(select(Grant).where(Grant.ref == r.json()["ref"]))).scalar_one()
    assert grant.status == "delivered"


async def test_a_lost_job_is_resent_after_the_configured_redelivery_time(kernel, make_tenant, jobs):
    assert REDELIVER_AFTER.total_seconds() == 300  # minutes, not an hour
    runtime = JobRuntime(
        Kernel(
            settings=msgspec.structs.replace(kernel.settings, outbox_redeliver_seconds=2.0),
            db=kernel.db,
            keys=kernel.keys,
        )
    )
    redeliver_after = runtime.relay.redeliver_after
    await asyncio.to_thread(runtime.broker.close)
    assert redeliver_after == dt.timedelta(seconds=2)
    tenant = await make_tenant()
    invite = await held_invite(kernel, tenant.id)
    black_hole = StubBroker()  # takes the message and loses it, like Redis restarted without persistence
    black_hole.emit_after("process_boot")
    declare_actors(black_hole)
    scope = dict(tenant_ids=[tenant.id], business_keys=[invite.business_key], redeliver_after=redeliver_after)
    assert (await relay_once(kernel.db, black_hole, now=FAR, **scope)).enqueued == 1
    soon = await relay_once(kernel.db, jobs.broker, now=FAR + dt.timedelta(seconds=1), **scope)
    assert soon.redelivered == 0
    later = await relay_once(kernel.db, jobs.broker, now=FAR + dt.timedelta(seconds=3), **scope)
    assert later.redelivered == 1
    await jobs.drain()
    again = await relay_once(kernel.db, jobs.broker, now=FAR + dt.timedelta(seconds=10), **scope)
    assert again.redelivered == 0  # done: never sent a third time
    assert len(jobs.recorder.to(invite.email)) == 1
    assert (await outbox_row(kernel, tenant.id, invite.outbox_id)).status == "done"


async def test_console_sessions_use_the_namespace_and_survive_a_missing_redis():
    namespace = "ns-" + secrets.token_hex(3)
    with private_redis() as (url, _proc):
        store = ResilientRedisStore.for_url(url, namespace)
        await store.set("abc", b"data", expires_in=60)
        probe = aioredis.from_url(url)
        keys = [k.decode() for k in await probe.keys("*")]
        await probe.aclose()
        assert keys == [f"{namespace}:sessions:abc"]
        assert await store.get("abc") == b"data"
        await store._redis.aclose()
    dead = ResilientRedisStore.for_url(closed_port_url(), namespace)
    await dead.set("abc", b"data", expires_in=60)  # after a commit: logged and swallowed
    await dead.delete("abc")
    with pytest.raises(SessionStoreUnavailable) as caught:  # before any work: 503 with Retry-After
        await dead.get("abc")
    assert caught.value.status == 503 and caught.value.headers["Retry-After"]
    await dead._redis.aclose()


async def test_a_started_job_is_marked_running_and_not_resent_while_it_may_still_run(
    kernel, make_tenant, jobs
):
    from core.jobs.broker import OUTBOX_OPTION, TENANT_OPTION, TenantMiddleware
    from core.jobs.relay import RUNNING_REDELIVER_AFTER

    tenant = await make_tenant()
    invite = await held_invite(kernel, tenant.id)
    black_hole = StubBroker()
    black_hole.emit_after("process_boot")
    declare_actors(black_hole)
    scope = dict(tenant_ids=[tenant.id], business_keys=[invite.business_key])
    assert (await relay_once(kernel.db, black_hole, now=FAR, **scope)).enqueued == 1
    # a worker starts the message (e.g. a long job, or one in dramatiq's retry backoff)
    middleware = TenantMiddleware(jobs.env)
    message = dramatiq.Message(
        queue_name="notifications",
        actor_name="send_notification",
        args=(),
        kwargs={},
        options={TENANT_OPTION: str(tenant.id), OUTBOX_OPTION: str(invite.outbox_id)},
    )

    def start_and_leave() -> None:
        middleware.before_process_message(black_hole, message)
        middleware.after_skip_message(black_hole, message)  # reset the context; the row stays running
        close_thread_loop()

    await asyncio.to_thread(start_and_leave)
    row = await outbox_row(kernel, tenant.id, invite.outbox_id)
    assert row.status == "running" and row.enqueued_at < FAR  # stamped when the worker started it
    started = row.enqueued_at
    short = await relay_once(kernel.db, jobs.broker, now=started + REDELIVER_AFTER * 2, **scope)
    assert short.redelivered == 0
    late = await relay_once(
        kernel.db, jobs.broker, now=started + RUNNING_REDELIVER_AFTER + dt.timedelta(seconds=1), **scope
    )
    assert late.redelivered == 1
    await jobs.drain()
    assert len(jobs.recorder.to(invite.email)) == 1
    assert (await outbox_row(kernel, tenant.id, invite.outbox_id)).status == "done"
