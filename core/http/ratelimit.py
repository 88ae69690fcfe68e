"""Fixed-window rate limits (per tenant and per client) on Redis, or in memory in embedded mode."""

from __future__ import annotations

import time

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
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


class RateLimiter:
    """Checks several (key, per-minute limit) windows at once; the tightest one is reported."""

    def __init__(self, redis_url: str = "") -> None:
        self.storage: Storage = (
            RedisStorage(
                f"async+{redis_url}" if not redis_url.startswith("async+") else redis_url,
                implementation="redispy",
            )
            if redis_url
            else MemoryStorage()
        )
        self.limiter = FixedWindowRateLimiter(self.storage)

    async def hit(self, windows: list[tuple[str, int]]) -> RateDecision:
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
