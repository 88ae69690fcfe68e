"""Fixed-window rate limits (per tenant and per client) on Redis, or in memory in embedded mode.

On Redis every window of a request is counted by one script call (one round trip); in memory the
``limits`` library counts them. Both use one-minute windows that start at a key's first hit. Redis keys
are ``<KAQUAN_REDIS_NAMESPACE>:ratelimit:{<slot>}:<window key>:minute``: the windows of one call share the
hash tag ``{<slot>}`` (the tenant), so the script's keys sit in one slot of a Redis Cluster.

The decision is taken before any work is done. When Redis is away (refused, timed out, restarting) the
limiter **fails open to a local limit**: the same windows are counted in this process's memory (so each
API process allows at most the configured rate per tenant and client), a warning ``ratelimit_fallback``
is logged (at most once per :data:`FALLBACK_LOG_EVERY` seconds) and the metric
``kaquan_ratelimit_fallback_total`` is incremented per request. Redis is tried again after
:data:`REDIS_RETRY_SECONDS`, so a dead Redis costs no connection attempt on every request. Never a 500.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis
import structlog
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from prometheus_client import Counter
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = structlog.get_logger("kaquan.ratelimit")

#: Requests counted locally because Redis was unreachable.
FALLBACKS = Counter("kaquan_ratelimit_fallback_total", "Rate-limit decisions taken locally (Redis away)")
#: After a Redis failure, requests are counted locally for this long before Redis is tried again.
REDIS_RETRY_SECONDS = 2.0
#: At most one ``ratelimit_fallback`` warning per this many seconds.
FALLBACK_LOG_EVERY = 10.0
#: Redis answers within this (connect and read), else the local limit decides.
REDIS_TIMEOUT_SECONDS = 0.5


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
    """Checks several (key, per-minute limit) windows at once; the tightest one is reported.

    ``namespace`` prefixes the Redis keys (``KAQUAN_REDIS_NAMESPACE``).
    """

    def __init__(self, redis_url: str = "", namespace: str = "kaquan") -> None:
        self.redis: aioredis.Redis | None = None
        self.namespace = namespace or "kaquan"
        if redis_url:
            self.redis = aioredis.from_url(
                redis_url.removeprefix("async+"),
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                retry=Retry(NoBackoff(), 0),  # no retry on the request path: the local limit decides
            )
            self._script = self.redis.register_script(_HIT_LUA)
        self.storage: Storage = MemoryStorage()
        self.limiter = FixedWindowRateLimiter(self.storage)
        self._redis_down_until = 0.0
        self._last_warning = 0.0

    def redis_key(self, key: str, slot: str) -> str:
        """The Redis key of window ``key``, in the Redis Cluster hash slot of ``slot``."""
        return f"{self.namespace}:ratelimit:{{{slot}}}:{key}:minute"

    async def hit(self, windows: list[tuple[str, int]], slot: str) -> RateDecision:
        """Count one request in every window (Redis, or locally when Redis is away). ``slot`` names what the
        windows belong to (the tenant): their Redis keys share it as hash tag."""
        if self.redis is not None:
            now = time.monotonic()
            if now >= self._redis_down_until:
                try:
                    return await self._hit_redis(windows, slot)
                except (aioredis.RedisError, OSError) as exc:
                    self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
                    self._warn(exc)
            FALLBACKS.inc()
        return await self._hit_local(windows)

    def _warn(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_warning >= FALLBACK_LOG_EVERY:
            self._last_warning = now
            log.warning(
                "ratelimit_fallback",
                error=f"{type(exc).__name__}: {exc}"[:300],
                detail="Redis unreachable: rate limits counted in this process until it is back",
            )

    async def _hit_local(self, windows: list[tuple[str, int]]) -> RateDecision:
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

    async def _hit_redis(self, windows: list[tuple[str, int]], slot: str) -> RateDecision:
        keys = [self.redis_key(key, slot) for key, _ in windows]
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
