"""The risk engine behind :mod:`core.risk.gate`: blocklists, lockouts, limits, failure velocity, device flags.

``admit`` refuses (``RiskRefused``, 429, a stable ``reason``) or counts the units against every applicable
limit and returns a :class:`Ticket` that ``give_back`` uses to subtract them again.

Where things are written:
- Limit counters: Redis in service mode (one Lua script checks and adds every counter atomically); without
  Redis the ``risk_counters`` table — on PostgreSQL in the engine's own short transaction (a conditional
  upsert per counter, in key order), on SQLite in the caller's transaction (SQLite has one writer at a time,
  so a second connection could not write while the caller holds the lock; the caller's rollback or
  ``give_back`` undoes the count).
- Refusals, failures, lockouts and flags: always in their own transaction, so they survive the caller's
  rollback. On SQLite, when the caller's connection already holds the write lock, that transaction runs in
  a background task right after (it waits for the lock); :func:`settle` waits for those.

The clock is :func:`_now` (tests replace it to stand at a tenant-local midnight or a month end).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.audit.services import record
from core.db.base import utcnow
from core.db.context import require_tenant, tenant_context
from core.db.ids import new_id
from core.db.session import Database, KaquanSession
from core.events.services import emit
from core.risk import counters
from core.risk.counters import CounterSpec, mask, normalize_ip, subject_key, window_bounds
from core.risk.models import BLOCK_KINDS, FAILURE_DIMENSIONS, RiskBlock, RiskFlag, RiskLockout, RiskRefusal
from core.risk.services import RiskConfig, load_config
from core.risk.subjects import RISK_ACTIONS, RiskRefused, RiskSubject
from core.settings import Settings

log = structlog.get_logger("kaquan.risk")
T = TypeVar("T")

_ACTION_ZH = {"grant": "发放", "claim": "领取", "transfer": "转赠", "redeem": "核销"}
_DIMENSION_ZH = {"member": "会员", "phone": "手机号", "ip": "IP", "device": "设备", "client": "API 客户端"}
_WINDOW_ZH = {"day": "天", "month": "月"}
_BLOCKED = {
    "phone": ("This phone number is blocked", "该手机号已被列入黑名单"),
    "device": ("This device is blocked", "该设备已被列入黑名单"),
    "ip": ("Requests from this IP address are blocked", "该 IP 地址已被列入黑名单"),
}


# The actions whose failed attempts (wrong code, PIN or one-time code) are counted and can lock out.
FAILURE_ACTIONS: tuple[str, ...] = ("claim", "redeem")


def _now() -> dt.datetime:
    """The engine's clock (UTC); tests monkeypatch it."""
    return utcnow()


def now() -> dt.datetime:
    """The engine's clock, for callers that show or lift lockouts against the time the engine keeps."""
    return _now()


@dataclass
class Ticket:
    """What ``admit`` counted, so ``give_back`` can subtract it again."""

    tenant_id: uuid.UUID | None = None
    quantity: int = 0
    keys: tuple[str, ...] = ()
    store: str = "none"  # none | redis | db (own transaction) | session (the caller's transaction)
    engine: AsyncEngine | None = None
    session: AsyncSession | None = None
    given_back: bool = field(default=False)


def dimensions(subject: RiskSubject) -> dict[str, str]:
    """The subject's known dimensions and their normalised values."""
    dims: dict[str, str] = {}
    if subject.member_id is not None:
        dims["member"] = str(subject.member_id)
    if subject.phone_digest:
        dims["phone"] = subject.phone_digest
    if subject.ip and subject.ip.strip():
        dims["ip"] = normalize_ip(subject.ip)
    if subject.device_id and subject.device_id.strip():
        dims["device"] = subject.device_id.strip()[:256]
    if subject.client_id is not None:
        dims["client"] = str(subject.client_id)
    return dims


def counter_key(action: str, dimension: str, window: str, bucket: str, value: str) -> str:
    return f"{action}:{dimension}:{window}:{bucket}:{subject_key(dimension, value)}"


# --- own transactions ------------------------------------------------------------------------------

_pending: set[asyncio.Task[Any]] = set()
_databases: dict[tuple[str, int], Database] = {}


def _engine_of(session: AsyncSession, settings: Settings) -> AsyncEngine:
    """The engine of the risk's own transactions: a small pool of its own on the caller's database.

    A separate pool, because the caller holds a connection of the main pool while it waits for these
    transactions: sharing one pool would deadlock once every connection belongs to a waiting caller.
    """
    url = (
        session.bind.url.render_as_string(hide_password=False)
        if isinstance(session.bind, AsyncEngine)
        else settings.db_url
    )
    key = (url, id(asyncio.get_running_loop()))
    db = _databases.get(key)
    if db is None:
        db = _databases[key] = Database.from_settings(settings, url, pool_size=5, max_overflow=5)
    return db.engine


async def _holds_sqlite_write(session: AsyncSession) -> bool:
    """Whether the caller's SQLite connection is inside a write transaction (holds the database lock)."""
    if not session.in_transaction():
        return False
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    return bool(getattr(raw.driver_connection, "in_transaction", False))


async def _run_own(engine: AsyncEngine, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    own_session = AsyncSession(engine, expire_on_commit=False, sync_session_class=KaquanSession)
    async with own_session as own, own.begin():
        return await work(own)


def _finished(task: asyncio.Task[Any]) -> None:
    _pending.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("risk_write_failed", error_type=type(task.exception()).__name__, exc_info=task.exception())


async def _autonomous(
    session: AsyncSession, settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]
) -> T | None:
    """Run ``work`` in its own transaction now (or, on SQLite behind the caller's write lock, just after)."""
    engine = _engine_of(session, settings)
    if engine.dialect.name == "sqlite" and await _holds_sqlite_write(session):
        task = asyncio.create_task(_run_own(engine, work))
        _pending.add(task)
        task.add_done_callback(_finished)
        return None
    return await _run_own(engine, work)


async def settle() -> None:
    """Wait for own-transaction writes that had to wait for a SQLite write lock."""
    while _pending:
        await asyncio.gather(*list(_pending), return_exceptions=True)


# --- refusals --------------------------------------------------------------------------------------


async def _refuse(
    session: AsyncSession,
    settings: Settings,
    tenant_id: uuid.UUID,
    action: str,
    subject: RiskSubject,
    quantity: int,
    reason: str,
    en: str,
    zh: str,
    *,
    dimension: str | None = None,
    value: str | None = None,
    limit: int | None = None,
    retry_after: int | None = None,
    now: dt.datetime,
) -> RiskRefused:
    """Record the refusal in its own transaction and build the error to raise."""
    masked = mask(dimension, value) if dimension and value else None

    async def write(own: AsyncSession) -> None:
        own.add(
            RiskRefusal(
                action=action,
                reason=reason,
                dimension=dimension,
                subject_masked=masked,
                member_id=subject.member_id,
                client_id=subject.client_id,
                quantity=quantity,
                max_units=limit,
                occurred_at=now,
            )
        )

    try:
        await _autonomous(session, settings, write)
    except (SQLAlchemyError, OSError):  # the refusal stands even if its log row cannot be written
        log.exception("risk_refusal_not_recorded", reason=reason)
    log.info("risk_refused", tenant_id=str(tenant_id), action=action, reason=reason, subject=masked)
    extra: dict[str, Any] = {"reason": reason, "action": action}
    if dimension:
        extra["dimension"] = dimension
    if limit is not None:
        extra["limit"] = limit
    headers: dict[str, str] = {}
    if retry_after is not None:
        extra["retry_after"] = retry_after
        headers["Retry-After"] = str(retry_after)
    return RiskRefused(en, zh, extra=extra, headers=headers)


def _seconds_until(end: dt.datetime, now: dt.datetime) -> int:
    return max(math.ceil((end - now).total_seconds()), 1)


# --- checks ----------------------------------------------------------------------------------------


async def _check_blocklist(
    session: AsyncSession,
    settings: Settings,
    tenant_id: uuid.UUID,
    action: str,
    subject: RiskSubject,
    dims: dict[str, str],
    quantity: int,
    now: dt.datetime,
) -> None:
    kinds = tuple(k for k in BLOCK_KINDS if k in dims)
    if not kinds:
        return
    params: dict[str, Any] = {f"{k}_value": dims[k] for k in kinds}
    params["tenant"] = tenant_id
    connection = await session.connection()  # Core on the connection: no ORM execution overhead
    rows = (await connection.execute(_blocklist_statement(kinds), params)).all()
    hit: str | None = None
    for kind, value in rows:
        if kind in ("phone", "device"):
            hit = kind
        elif _ip_in(dims["ip"], value):
            hit = hit or "ip"
    if hit is not None:
        en, zh = _BLOCKED[hit]
        raise await _refuse(
            session,
            settings,
            tenant_id,
            action,
            subject,
            quantity,
            f"blocked_{hit}",
            en,
            zh,
            dimension=hit,
            value=dims[hit],
            now=now,
        )


@functools.lru_cache(maxsize=8)
def _lockout_statement(known: tuple[str, ...]) -> Any:
    """The latest active lockout of any of the subject's failure dimensions; built once per combination."""
    t = RiskLockout.__table__.c
    subjects = [
        and_(t.dimension == d, t.subject_key == bindparam(f"{d}_key", type_=t.subject_key.type))
        for d in known
    ]
    return (
        select(t.dimension, t.locked_until)
        .where(
            t.tenant_id == bindparam("tenant", type_=t.tenant_id.type),
            t.action == bindparam("action", type_=t.action.type),
            t.lifted_at.is_(None),
            t.locked_until > bindparam("now", type_=t.locked_until.type),
            or_(*subjects),
        )
        .order_by(t.locked_until.desc())
        .limit(1)
    )


@functools.lru_cache(maxsize=8)
def _blocklist_statement(kinds: tuple[str, ...]) -> Any:
    """The blocklist entries that may match the subject's phone, device and IP (networks are checked
    in Python). Built once per combination of known dimensions, with the values as parameters."""
    t = RiskBlock.__table__.c
    conds = []
    for kind in kinds:
        value = t.value == bindparam(f"{kind}_value", type_=t.value.type)
        conds.append(and_(t.kind == kind, or_(value, t.value.contains("/")) if kind == "ip" else value))
    return select(t.kind, t.value).where(
        t.tenant_id == bindparam("tenant", type_=t.tenant_id.type), or_(*conds)
    )


def _ip_in(ip: str, entry: str) -> bool:
    import ipaddress

    try:
        address = ipaddress.ip_address(ip)
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return address.version == network.version and address in network


async def _check_lockout(
    session: AsyncSession,
    settings: Settings,
    tenant_id: uuid.UUID,
    action: str,
    subject: RiskSubject,
    dims: dict[str, str],
    quantity: int,
    now: dt.datetime,
) -> None:
    known = tuple(d for d in FAILURE_DIMENSIONS if d in dims)
    if not known:
        return
    params: dict[str, Any] = {"tenant": tenant_id, "action": action, "now": now}
    params |= {f"{d}_key": subject_key(d, dims[d]) for d in known}
    connection = await session.connection()  # Core on the connection: no ORM execution overhead
    row = (await connection.execute(_lockout_statement(known), params)).first()
    if row is not None:
        dimension, until = row
        raise await _refuse(
            session,
            settings,
            tenant_id,
            action,
            subject,
            quantity,
            "locked_out",
            "Too many failed attempts; try again later",
            "失败次数过多，已被暂时锁定，请稍后再试",
            dimension=dimension,
            value=dims[dimension],
            retry_after=_seconds_until(until, now),
            now=now,
        )


def _insert(dialect: str) -> Any:
    return pg_insert if dialect == "postgresql" else sqlite_insert


async def _flag_device(
    own: AsyncSession, tenant_id: uuid.UUID, day: str, device: str, member_count: int
) -> None:
    """Insert today's flag of a device once; the first insert emits ``risk.flagged``."""
    table = RiskFlag.__table__
    flag_id = new_id()
    masked = mask("device", device)
    inserted = (
        await own.execute(
            _insert(own.get_bind().dialect.name)(table)
            .values(
                id=flag_id,
                kind="device_many_members",
                day=day,
                subject_key=subject_key("device", device),
                subject_masked=masked,
                member_count=member_count,
                created_at=_now(),
            )
            .on_conflict_do_nothing(
                index_elements=[table.c.tenant_id, table.c.kind, table.c.day, table.c.subject_key]
            )
            .returning(table.c.id)
        )
    ).first()
    if inserted is None:
        return
    data = {"kind": "device_many_members", "day": day, "subject": masked, "member_count": member_count}
    emit(own, "risk.flagged", flag_id, data)
    record(own, "risk.flagged", "risk_flag", flag_id, data, tenant_id=tenant_id)


async def _note_device(
    session: AsyncSession,
    settings: Settings,
    tenant_id: uuid.UUID,
    config: RiskConfig,
    device: str,
    member_id: uuid.UUID,
    now: dt.datetime,
) -> None:
    """Track distinct members per device and day; flag a device once it passes the tenant's threshold."""
    day, ends = window_bounds(now, config.tz, "day")
    dkey = subject_key("device", device)
    threshold = config.device_member_limit
    if settings.redis_url:
        ttl = int((ends - now).total_seconds() * 1000) + 3_600_000
        n, first = await counters.redis_device_member(
            settings, tenant_id, day, dkey, member_id, ttl, threshold
        )
        if first:
            await _autonomous(session, settings, lambda own: _flag_device(own, tenant_id, day, device, n))
        return

    async def work(own: AsyncSession) -> None:
        n = await counters.db_device_member(own, tenant_id, day, dkey, member_id)
        if n > threshold:
            await _flag_device(own, tenant_id, day, device, n)

    await _autonomous(session, settings, work)


class _Exceeded(Exception):
    def __init__(self, index: int) -> None:
        self.index = index


async def _count(
    session: AsyncSession,
    settings: Settings,
    tenant_id: uuid.UUID,
    specs: list[CounterSpec],
    quantity: int,
    now: dt.datetime,
) -> tuple[int, Ticket]:
    """Add ``quantity`` to every counter or none; (-1, ticket) on success, else (failing index, empty)."""
    keys = tuple(s.key for s in specs)
    if settings.redis_url:
        failed = await counters.redis_admit(settings, tenant_id, specs, quantity, now)
        if failed >= 0:
            return failed, Ticket()
        return -1, Ticket(tenant_id, quantity, keys, "redis")
    engine = _engine_of(session, settings)
    if engine.dialect.name == "postgresql":

        async def add_all(own: AsyncSession) -> None:
            for i, spec in enumerate(specs):
                if not await counters.db_add(own, tenant_id, spec, quantity):
                    raise _Exceeded(i)

        try:
            await _run_own(engine, add_all)
        except _Exceeded as exc:
            return exc.index, Ticket()
        return -1, Ticket(tenant_id, quantity, keys, "db", engine=engine)
    added: list[str] = []
    for i, spec in enumerate(specs):
        if not await counters.db_add(session, tenant_id, spec, quantity):
            if added:
                await counters.db_subtract(session, tenant_id, added, quantity)
            return i, Ticket()
        added.append(spec.key)
    return -1, Ticket(tenant_id, quantity, keys, "session", session=session)


# --- the three entry points ------------------------------------------------------------------------


async def admit(
    session: AsyncSession, settings: Settings, action: str, subject: RiskSubject, quantity: int = 1
) -> Ticket:
    """Refuse ``action`` for ``subject`` (:class:`RiskRefused`) or count ``quantity`` units of it."""
    if action not in RISK_ACTIONS:
        raise ValueError(f"unknown risk action {action!r}")
    if quantity < 1:
        raise ValueError("quantity must be at least 1")
    tenant_id = require_tenant()
    now = _now()
    config = await load_config(session, tenant_id)
    dims = dimensions(subject)
    await _check_blocklist(session, settings, tenant_id, action, subject, dims, quantity, now)
    if action in FAILURE_ACTIONS:  # only these record failures, so only they can be locked out
        await _check_lockout(session, settings, tenant_id, action, subject, dims, quantity, now)
    if "device" in dims and subject.member_id is not None:
        await _note_device(session, settings, tenant_id, config, dims["device"], subject.member_id, now)

    rules = [r for r in config.limits if r.active and r.action == action and r.dimension in dims]
    specs: list[tuple[CounterSpec, str, str]] = []
    for rule in rules:
        bucket, ends = window_bounds(now, config.tz, rule.window)
        key = counter_key(action, rule.dimension, rule.window, bucket, dims[rule.dimension])
        specs.append((CounterSpec(key, rule.limit, ends), rule.dimension, rule.window))
    specs.sort(key=lambda s: s[0].key)  # one lock order for every admit: no deadlocks between them
    if not specs:
        return Ticket(tenant_id)
    failed = next((i for i, (spec, _, _) in enumerate(specs) if quantity > spec.limit), -1)
    ticket = Ticket(tenant_id)
    if failed < 0:
        failed, ticket = await _count(session, settings, tenant_id, [s[0] for s in specs], quantity, now)
    if failed >= 0:
        spec, dimension, window = specs[failed]
        raise await _refuse(
            session,
            settings,
            tenant_id,
            action,
            subject,
            quantity,
            f"limit_{dimension}_{window}",
            f"Limit reached: at most {spec.limit} {action} per {dimension} per {window}",
            f"已达上限：每{_DIMENSION_ZH[dimension]}每{_WINDOW_ZH[window]}最多{_ACTION_ZH[action]} {spec.limit} 次",
            dimension=dimension,
            value=dims[dimension],
            limit=spec.limit,
            retry_after=_seconds_until(spec.ends_at, now),
            now=now,
        )
    return ticket


async def refuse_if_locked_out(
    session: AsyncSession, settings: Settings, action: str, subject: RiskSubject
) -> None:
    """Refuse (``locked_out``) while the subject is locked out of ``action``; counts nothing."""
    if action not in FAILURE_ACTIONS:
        raise ValueError(f"lockouts exist for {FAILURE_ACTIONS}, not {action!r}")
    dims = dimensions(subject)
    await _check_lockout(session, settings, require_tenant(), action, subject, dims, 1, _now())


async def refuse_if_blocked(
    session: AsyncSession, settings: Settings, action: str, subject: RiskSubject
) -> None:
    """Refuse (``blocked_phone`` / ``blocked_device`` / ``blocked_ip``, recorded as a refusal like every
    other) when a blocklist entry matches the subject; counts nothing against the limits."""
    if action not in RISK_ACTIONS:
        raise ValueError(f"unknown risk action {action!r}")
    dims = dimensions(subject)
    await _check_blocklist(session, settings, require_tenant(), action, subject, dims, 1, _now())


async def give_back(settings: Settings, ticket: Ticket) -> None:
    """Subtract what ``admit`` counted (the guarded block failed). Never raises."""
    if ticket.given_back or not ticket.keys or ticket.tenant_id is None:
        return
    ticket.given_back = True
    tenant_id, keys, quantity = ticket.tenant_id, list(ticket.keys), ticket.quantity
    try:
        with tenant_context(tenant_id):
            if ticket.store == "redis":
                await counters.redis_give_back(settings, tenant_id, keys, quantity)
            elif ticket.store == "db" and ticket.engine is not None:
                await _run_own(
                    ticket.engine, lambda own: counters.db_subtract(own, tenant_id, keys, quantity)
                )
            elif ticket.store == "session" and ticket.session is not None:
                await counters.db_subtract(ticket.session, tenant_id, keys, quantity)
    except SQLAlchemyError:
        # the caller's failed transaction cannot run it; its rollback takes the counted units away anyway
        if ticket.store != "session":
            log.exception("risk_give_back_failed", tenant_id=str(tenant_id))
    except Exception:  # boundary: runs on the caller's failure path, so it must not mask that failure
        log.exception("risk_give_back_failed", tenant_id=str(tenant_id))


async def record_failure(
    session: AsyncSession, settings: Settings, action: str, subject: RiskSubject
) -> None:
    """Count a failed attempt per client, IP and device; at the tenant's limit, lock that subject out."""
    if action not in FAILURE_ACTIONS:
        raise ValueError(f"failed attempts are counted for {FAILURE_ACTIONS}, not {action!r}")
    tenant_id = require_tenant()
    now = _now()
    config = await load_config(session, tenant_id)
    velocity = config.velocity
    window = dt.timedelta(minutes=velocity.window_minutes)
    until = now + dt.timedelta(minutes=velocity.lockout_minutes)
    dims = dimensions(subject)

    def lock(own: AsyncSession, dimension: str, failures: int) -> None:
        lockout = RiskLockout(
            id=new_id(),
            action=action,
            dimension=dimension,
            subject_key=subject_key(dimension, dims[dimension]),
            subject_masked=mask(dimension, dims[dimension]),
            failures=failures,
            locked_until=until,
            created_at=now,
        )
        own.add(lockout)
        record(
            own,
            "risk.locked_out",
            "risk_lockout",
            lockout.id,
            {
                "action": action,
                "dimension": dimension,
                "subject": lockout.subject_masked,
                "failures": failures,
                "locked_until": until.isoformat(),
            },
            tenant_id=tenant_id,
        )
        log.warning(
            "risk_locked_out",
            tenant_id=str(tenant_id),
            action=action,
            dimension=dimension,
            subject=lockout.subject_masked,
        )

    for dimension in FAILURE_DIMENSIONS:
        if dimension not in dims:
            continue
        skey = subject_key(dimension, dims[dimension])
        if settings.redis_url:
            n = await counters.redis_failure(
                settings, tenant_id, dimension, skey, now, window, velocity.failure_limit
            )
            if n:

                async def lock_now(own: AsyncSession, d: str = dimension, failures: int = n) -> None:
                    lock(own, d, failures)

                await _autonomous(session, settings, lock_now)
            continue

        async def work(own: AsyncSession, d: str = dimension, k: str = skey) -> None:
            n = await counters.db_failure(own, tenant_id, action, d, k, now, window, velocity.failure_limit)
            if n:
                lock(own, d, n)

        await _autonomous(session, settings, work)

