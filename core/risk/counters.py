"""Where risk counts live: Redis in service mode (``settings.redis_url``), the database in embedded mode.

Windows are tenant-local calendar days and months; a counter's key names the window it counts
(``grant:member:month:2026-11:<subject key>``) and expires at the end of that window. Every check-and-add is
atomic: a Lua script on Redis, a conditional upsert (``ON CONFLICT … DO UPDATE … WHERE count + q <= limit``)
in the database, taken in key order so concurrent admits cannot deadlock.

Redis keys are ``<namespace>:risk:{<tenant id>}:…``: the hash tag ``{<tenant id>}`` puts every key of a
tenant, so every key one script touches, in one slot of a Redis Cluster (``tests/unit/test_redis_slots.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import uuid
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis
from sqlalchemy import and_, case, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.ids import new_id
from core.db.results import rowcount
from core.risk.models import RiskCounter, RiskDeviceMember, RiskFailure
from core.settings import Settings

EXPIRY_GRACE = dt.timedelta(hours=1)


# --- windows and subjects --------------------------------------------------------------------------


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo("Asia/Shanghai")


def window_bounds(now: dt.datetime, tz: ZoneInfo, window: str) -> tuple[str, dt.datetime]:
    """The tenant-local bucket name of ``now`` (``2026-11-23`` or ``2026-11``) and when it ends (UTC)."""
    local = now.astimezone(tz)
    if window == "day":
        start = dt.datetime(local.year, local.month, local.day, tzinfo=tz)
        end = start + dt.timedelta(days=1)  # wall-clock arithmetic: the next local midnight, DST or not
        return start.strftime("%Y-%m-%d"), end.astimezone(dt.UTC)
    if window == "month":
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        end = dt.datetime(year, month, 1, tzinfo=tz)
        return f"{local.year:04d}-{local.month:02d}", end.astimezone(dt.UTC)
    raise ValueError(f"unknown window {window!r}")


def normalize_ip(value: str) -> str:
    try:
        return ipaddress.ip_address(value.strip()).compressed
    except ValueError:
        return value.strip()


def subject_key(dimension: str, value: str) -> str:
    """What counters, failures, lockouts and flags key on: never the raw IP, device id or phone digest."""
    return hashlib.sha256(f"{dimension}\x1f{value}".encode()).hexdigest()


def mask(dimension: str, value: str) -> str:
    """A display form that identifies a subject to an operator without spelling it out."""
    if dimension == "ip":
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            return "ip ***"
        if ip.version == 4:
            return ".".join(value.split(".")[:3]) + ".*"
        return ":".join(ip.exploded.split(":")[:4]) + ":*"
    if dimension == "device":
        return value[:4] + "…" + value[-2:] if len(value) > 8 else value[:2] + "…"
    if dimension == "phone":
        return "phone#" + value[:8]
    return value  # member and client ids are opaque identifiers


# --- Redis -----------------------------------------------------------------------------------------

_ADMIT_LUA = """
local q = tonumber(ARGV[1])
local n = #KEYS
for i = 1, n do
  local cur = tonumber(redis.call('GET', KEYS[i]) or '0')
  if cur + q > tonumber(ARGV[1 + i]) then return i end
end
for i = 1, n do
  redis.call('INCRBY', KEYS[i], q)
  redis.call('PEXPIRE', KEYS[i], ARGV[1 + n + i])
end
return 0
"""

_GIVE_BACK_LUA = """
local q = tonumber(ARGV[1])
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local v = redis.call('DECRBY', KEYS[i], q)
    if v <= 0 then redis.call('DEL', KEYS[i]) end
  end
end
return 0
"""

# failures in a sliding window; at the limit the set is cleared and the count returned (one caller locks)
_FAILURE_LUA = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
local n = redis.call('ZCARD', KEYS[1])
if n >= limit then redis.call('DEL', KEYS[1]) return n end
return 0
"""

# distinct members of a device on a day; returns the count and 1 the first time it passes the threshold
_DEVICE_LUA = """
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local n = redis.call('SCARD', KEYS[1])
if n > tonumber(ARGV[3]) then
  local first = redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2])
  if first then return {n, 1} end
end
return {n, 0}
"""

_clients: dict[tuple[str, int], aioredis.Redis] = {}


def redis_for(settings: Settings) -> aioredis.Redis:
    """One client per URL and event loop (redis.asyncio connections belong to the loop that made them)."""
    loop = asyncio.get_running_loop()
    key = (settings.redis_url, id(loop))
    client = _clients.get(key)
    if client is None:
        for stale in [k for k in _clients if k[0] == settings.redis_url and k[1] != id(loop)]:
            _clients.pop(stale, None)
        # bounded waits: a Redis that stops answering fails the request (503, nothing changed), never hangs it
        client = aioredis.from_url(
            settings.redis_url, decode_responses=True, socket_connect_timeout=2, socket_timeout=2
        )
        _clients[key] = client
    return client


def redis_key(settings: Settings, tenant_id: uuid.UUID, *parts: str) -> str:
    """A tenant's risk key, hash-tagged by the tenant (one Redis Cluster slot per tenant)."""
    return ":".join((settings.redis_namespace, "risk", f"{{{tenant_id}}}", *parts))


# Moves a key of the layout before hash tags (KEYS[1]) to its new name (KEYS[2]), adding it to a new key that
# already exists: counters add up, sets and sorted sets unite, a flag stays. Single Redis only (the two names
# may hash to different Cluster slots); no Redis Cluster ever held the old layout.
_LEGACY_MOVE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('RENAME', KEYS[1], KEYS[2]) return 1 end
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'string' and ARGV[1] == 'c' then
  redis.call('INCRBY', KEYS[2], tonumber(redis.call('GET', KEYS[1])) or 0)
elseif kind == 'set' then
  for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do redis.call('SADD', KEYS[2], m) end
elseif kind == 'zset' then
  local m = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #m, 2 do redis.call('ZADD', KEYS[2], m[i + 1], m[i]) end
end
redis.call('DEL', KEYS[1])
return 1
"""


async def rename_legacy_keys(settings: Settings) -> int:
    """Move the risk keys written before hash tags (``<ns>:risk:<tenant>:…``) to ``<ns>:risk:{<tenant>}:…``
    with their expiry, so an upgrade keeps the counts of the running day and month windows. Run by
    ``kaquan migrate``; idempotent. Returns how many keys moved."""
    client = redis_for(settings)
    prefix = f"{settings.redis_namespace}:risk:"
    moved = 0
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        tenant, _, tail = key[len(prefix) :].partition(":")
        if tenant.startswith("{") or not tail:
            continue
        new = f"{prefix}{{{tenant}}}:{tail}"
        moved += int(await client.eval(_LEGACY_MOVE_LUA, 2, key, new, tail.split(":", 1)[0]))
    return moved


def _ttl_ms(now: dt.datetime, end: dt.datetime) -> int:
    return max(int((end + EXPIRY_GRACE - now).total_seconds() * 1000), 1000)


@dataclass(frozen=True)
class CounterSpec:
    """One limit to count against: the window-qualified key, its limit and when the window ends."""

    key: str
    limit: int
    ends_at: dt.datetime


async def redis_admit(
    settings: Settings, tenant_id: uuid.UUID, specs: list[CounterSpec], quantity: int, now: dt.datetime
) -> int:
    """Add ``quantity`` to every counter or to none; returns -1 on success, else the index that would exceed."""
    client = redis_for(settings)
    keys = [redis_key(settings, tenant_id, "c", s.key) for s in specs]
    args: list[Any] = [quantity, *[s.limit for s in specs], *[_ttl_ms(now, s.ends_at) for s in specs]]
    failed = int(await client.eval(_ADMIT_LUA, len(keys), *keys, *args))
    return failed - 1 if failed else -1


async def redis_give_back(settings: Settings, tenant_id: uuid.UUID, keys: list[str], quantity: int) -> None:
    client = redis_for(settings)
    await client.eval(
        _GIVE_BACK_LUA, len(keys), *[redis_key(settings, tenant_id, "c", k) for k in keys], quantity
    )


async def redis_failure(
    settings: Settings,
    tenant_id: uuid.UUID,
    dimension: str,
    skey: str,
    now: dt.datetime,
    window: dt.timedelta,
    limit: int,
) -> int:
    """Record a failure; returns the failure count when it reaches ``limit`` (and resets), else 0."""
    client = redis_for(settings)
    key = redis_key(settings, tenant_id, "f", dimension, skey)
    now_ms = int(now.timestamp() * 1000)
    return int(
        await client.eval(
            _FAILURE_LUA, 1, key, now_ms, int(window.total_seconds() * 1000), limit, f"{now_ms}:{new_id()}"
        )
    )


async def redis_device_member(
    settings: Settings,
    tenant_id: uuid.UUID,
    day: str,
    device_key: str,
    member_id: uuid.UUID,
    ttl_ms: int,
    threshold: int,
) -> tuple[int, bool]:
    client = redis_for(settings)
    members = redis_key(settings, tenant_id, "d", day, device_key)
    flagged = redis_key(settings, tenant_id, "df", day, device_key)
    n, first = await client.eval(_DEVICE_LUA, 2, members, flagged, str(member_id), ttl_ms, threshold)
    return int(n), bool(int(first))


# --- database --------------------------------------------------------------------------------------


def _insert(session: AsyncSession) -> Any:
    return (
        pg_insert if session.bind is not None and session.bind.dialect.name == "postgresql" else sqlite_insert
    )


async def db_add(session: AsyncSession, tenant_id: uuid.UUID, spec: CounterSpec, quantity: int) -> bool:
    """Add ``quantity`` to one counter if it stays within the limit (atomic conditional upsert)."""
    table = RiskCounter.__table__
    ins = _insert(session)(table).values(
        id=new_id(), key=spec.key, count=quantity, expires_at=spec.ends_at + EXPIRY_GRACE
    )
    stmt = ins.on_conflict_do_update(
        index_elements=[table.c.tenant_id, table.c.key],
        set_={"count": table.c.count + ins.excluded.count},
        where=table.c.count + ins.excluded.count <= spec.limit,
    ).returning(table.c.count)
    return (await session.execute(stmt)).first() is not None


async def db_subtract(session: AsyncSession, tenant_id: uuid.UUID, keys: list[str], quantity: int) -> None:
    table = RiskCounter.__table__
    await session.execute(
        update(table)
        .where(and_(table.c.tenant_id == tenant_id, table.c.key.in_(keys)))
        .values(count=case((table.c.count > quantity, table.c.count - quantity), else_=0))
    )


async def db_failure(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    action: str,
    dimension: str,
    skey: str,
    now: dt.datetime,
    window: dt.timedelta,
    limit: int,
) -> int:
    """Record a failure row; returns the count in the window when it reaches ``limit`` (and resets), else 0."""
    session.add(
        RiskFailure(action=action, dimension=dimension, subject_key=skey, occurred_at=now)
    )
    await session.flush()
    subject = and_(
        RiskFailure.tenant_id == tenant_id,
        RiskFailure.dimension == dimension,
        RiskFailure.subject_key == skey,
    )
    await session.execute(delete(RiskFailure).where(subject, RiskFailure.occurred_at <= now - window))
    n = int(
        (await session.execute(select(func.count()).select_from(RiskFailure).where(subject))).scalar_one()
    )
    if n >= limit:
        await session.execute(delete(RiskFailure).where(subject))
        return n
    return 0


async def db_device_member(
    session: AsyncSession, tenant_id: uuid.UUID, day: str, device_key: str, member_id: uuid.UUID
) -> int:
    """Note a member on a device for a day; returns the device's distinct members that day."""
    table = RiskDeviceMember.__table__
    stmt = (
        _insert(session)(table)
        .values(id=new_id(), day=day, device_key=device_key, member_id=member_id)
        .on_conflict_do_nothing(
            index_elements=[table.c.tenant_id, table.c.day, table.c.device_key, table.c.member_id]
        )
    )
    await session.execute(stmt)
    return int(
        (
            await session.execute(
                select(func.count())
                .select_from(table)
                .where(table.c.tenant_id == tenant_id, table.c.day == day, table.c.device_key == device_key)
            )
        ).scalar_one()
    )


async def purge_expired(session: AsyncSession, tenant_id: uuid.UUID, now: dt.datetime, tz: ZoneInfo) -> int:
    """Delete what no longer counts: counters of ended windows, failures older than a day, device-member
    sightings of days before yesterday (tenant-local). Returns the rows deleted."""
    deleted = 0
    yesterday = (now.astimezone(tz) - dt.timedelta(days=1)).strftime("%Y-%m-%d")
    for stmt in (
        delete(RiskCounter.__table__).where(
            RiskCounter.__table__.c.tenant_id == tenant_id, RiskCounter.__table__.c.expires_at < now
        ),
        delete(RiskFailure.__table__).where(
            RiskFailure.__table__.c.tenant_id == tenant_id,
            RiskFailure.__table__.c.occurred_at < now - dt.timedelta(days=1),
        ),
        delete(RiskDeviceMember.__table__).where(
            RiskDeviceMember.__table__.c.tenant_id == tenant_id, RiskDeviceMember.__table__.c.day < yesterday
        ),
    ):
        deleted += rowcount(await session.execute(stmt))
    return deleted
