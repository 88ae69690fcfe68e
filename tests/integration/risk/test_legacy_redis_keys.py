"""``kaquan migrate`` moves the Redis risk keys written before hash tags to their new names (issue 13), so an
upgrade keeps the counts of the running day and month windows, with their expiry."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from core.risk.counters import redis_key, rename_legacy_keys
from core.settings import load_settings
from tests.integration.jobs.redis_server import private_redis


async def test_legacy_risk_keys_move_to_hash_tagged_names_with_their_counts_and_expiry() -> None:
    tenant, other = uuid.uuid4(), uuid.uuid4()
    with private_redis() as (url, _proc):
        settings = load_settings(env={}, redis_url=url, redis_namespace="kq")
        client = aioredis.from_url(url, decode_responses=True)
        try:
            old = f"kq:risk:{tenant}"
            await client.set(f"{old}:c:grant:member:month:2026-11:abc", 4, px=3_600_000)
            await client.sadd(f"{old}:d:2026-11-23:dev", "m1", "m2")
            await client.pexpire(f"{old}:d:2026-11-23:dev", 3_600_000)
            await client.zadd(f"{old}:f:ip:k", {"1:a": 1, "2:b": 2})
            await client.set(f"{old}:df:2026-11-23:dev", "1", px=3_600_000)
            await client.set(f"kq:risk:{other}:c:grant:ip:day:2026-11-23:x", 1, px=60_000)
            # the new code already counted one grant of this window before the migration ran
            await client.set(redis_key(settings, tenant, "c", "grant:member:month:2026-11:abc"), 1, px=3_600_000)
            await client.set("kq:ratelimit:tenant:x:minute", 3)  # not a risk key: left alone

            assert await rename_legacy_keys(settings) == 5
            assert await client.get(redis_key(settings, tenant, "c", "grant:member:month:2026-11:abc")) == "5"
            assert await client.smembers(redis_key(settings, tenant, "d", "2026-11-23:dev")) == {"m1", "m2"}
            assert await client.zcard(redis_key(settings, tenant, "f", "ip:k")) == 2
            assert await client.get(redis_key(settings, tenant, "df", "2026-11-23:dev")) == "1"
            assert await client.get(redis_key(settings, other, "c", "grant:ip:day:2026-11-23:x")) == "1"
            for key in await client.keys("kq:risk:*"):
                assert "{" in key, key
                assert await client.pttl(key) > 0 or ":f:" in key, key
            assert await client.get("kq:ratelimit:tenant:x:minute") == "3"
            assert await rename_legacy_keys(settings) == 0  # idempotent
        finally:
            await client.aclose()
