"""The console session store on Redis, namespaced, with a documented behaviour when Redis is away.

Keys are ``<KAQUAN_REDIS_NAMESPACE>:sessions:<session id>``. Reading a session happens before any work:
if Redis is unreachable the request is answered ``503 session_store_unavailable`` with ``Retry-After``
(nothing was done). Writing or deleting a session happens after the request's change has committed:
a failure there is logged (``session_store_write_failed``) and swallowed, so the client still gets the
committed answer (at worst it has to sign in again).
"""

from __future__ import annotations

import datetime as dt

import structlog
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis, RedisError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from core.errors import DomainError

log = structlog.get_logger("kaquan.sessions")

#: Seconds a console session read waits for Redis before answering 503.
SESSION_REDIS_TIMEOUT_SECONDS = 2.0


class SessionStoreUnavailable(DomainError):
    """Redis holding the console sessions cannot be reached (before any work was done)."""

    status, code = 503, "session_store_unavailable"


def session_namespace(redis_namespace: str) -> str:
    """The RedisStore namespace of console sessions under ``KAQUAN_REDIS_NAMESPACE``."""
    return f"{redis_namespace or 'kaquan'}:sessions"


class ResilientRedisStore(RedisStore):
    """A :class:`RedisStore` whose reads fail with a 503 and whose writes never fail a committed request."""

    @classmethod
    def for_url(cls, url: str, redis_namespace: str) -> ResilientRedisStore:
        """A store on ``url`` with keys under ``<redis_namespace>:sessions``."""
        client = Redis.from_url(
            url,
            socket_connect_timeout=SESSION_REDIS_TIMEOUT_SECONDS,
            socket_timeout=SESSION_REDIS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 1),
        )
        return cls(redis=client, namespace=session_namespace(redis_namespace), handle_client_shutdown=True)

    async def get(self, key: str, renew_for: int | dt.timedelta | None = None) -> bytes | None:
        try:
            return await super().get(key, renew_for)
        except (RedisError, OSError) as exc:
            log.warning("session_store_unavailable", error=f"{type(exc).__name__}: {exc}"[:300])
            raise SessionStoreUnavailable(
                "Sessions are temporarily unavailable; nothing was changed. Retry shortly",
                "会话服务暂时不可用，未做任何更改，请稍后重试",
                headers={"Retry-After": "5"},
            ) from exc

    async def set(self, key: str, value: str | bytes, expires_in: int | dt.timedelta | None = None) -> None:
        try:
            await super().set(key, value, expires_in)
        except (RedisError, OSError) as exc:
            log.warning("session_store_write_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    async def delete(self, key: str) -> None:
        try:
            await super().delete(key)
        except (RedisError, OSError) as exc:
            log.warning("session_store_write_failed", error=f"{type(exc).__name__}: {exc}"[:300])
