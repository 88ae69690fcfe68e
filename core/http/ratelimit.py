"""Fixed-window rate limits (per tenant and per client) on Redis, or in memory in embedded mode.

On Redis every window of a request is counted by one script call (one round trip); in memory the
``limits`` library counts them. Both use one-minute windows that start at a key's first hit.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter


class RateDecision:
    __slots__ = ("allowed", "limit", "remaining", "reset_in")

    def __init__(self, allowed: bool, limit: int, remaining: int, reset_in: int) -> None:
        self.allowed, self.limit, self.remaining, self.reset_in = allowed, limit, remaining, reset_in

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(max(self.remaining, 0)).encode()),
            (b"ratelimit-reset", str(self.reset_in).encode()),
        ]
        if not self.allowed:
            out.append((b"retry-after", str(max(self.reset_in, 1)).encode()))
        return out


# KEYS: the window counters; ARGV: their limits, then the window length in seconds. Counts each window
# in turn and stops at the first one over its limit; returns count and seconds left for each counted.
_HIT_LUA = """
local out = {}
local window = tonumber(ARGV[#ARGV])
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, window) end
  local ttl = redis.call('TTL', key)
  if ttl < 0 then redis.call('EXPIRE', key, window); ttl = window end
  out[#out + 1] = n
  out[#out + 1] = ttl
  if n > tonumber(ARGV[i]) then break end
end
return out
"""


class RateLimiter:
    """Checks several (key, per-minute limit) windows at once; the tightest one is reported."""

    def __init__(self, redis_url: str = "") -> None:
        self.redis: aioredis.Redis | None = None
        if redis_url:
            self.redis = aioredis.from_url(redis_url.removeprefix("async+"))
            self._script = self.redis.register_script(_HIT_LUA)
        self.storage: Storage = MemoryStorage()
        self.limiter = FixedWindowRateLimiter(self.storage)

    async def hit(self, windows: list[tuple[str, int]]) -> RateDecision:
        if self.redis is not None:
            return await self._hit_redis(windows)
        decision: RateDecision | None = None
        for key, per_minute in windows:
            item = RateLimitItemPerMinute(per_minute)
            allowed = await self.limiter.hit(item, "kaquan", key)
            stats = await self.limiter.get_window_stats(item, "kaquan", key)
            reset_in = max(int(stats.reset_time - time.time()), 0)
            d = RateDecision(allowed, per_minute, stats.remaining, reset_in)
            if decision is None or not d.allowed or (decision.allowed and d.remaining < decision.remaining):
                decision = d
            if not allowed:
                break
        return decision or RateDecision(True, 0, 0, 0)

    async def _hit_redis(self, windows: list[tuple[str, int]]) -> RateDecision:
        keys = [f"LIMITER/kaquan/{key}/1/minute" for key, _ in windows]
        raw = await self._script(keys=keys, args=[*(limit for _, limit in windows), 60])
        decision: RateDecision | None = None
        for i in range(0, len(raw), 2):
            count, ttl = int(raw[i]), int(raw[i + 1])
            limit = windows[i // 2][1]
            d = RateDecision(count <= limit, limit, limit - count, max(ttl, 0))
            if decision is None or not d.allowed or (decision.allowed and d.remaining < decision.remaining):
                decision = d
        return decision or RateDecision(True, 0, 0, 0)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
