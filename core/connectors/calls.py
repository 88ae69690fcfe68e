"""Calling a tenant's connector account: decrypt its settings, run one method with a timeout, record health.

Every call into partner code goes through :meth:`BoundAccount.call`. A connector that raises, hangs past its
timeout or answers with something that is not the contract's type fails that one call, for that account
only: the caller gets a :class:`ConnectorCallFailed` (``retryable`` for a timeout or a raise, so the job
system may retry an idempotent call), the account's health records it, and nothing else is touched.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import ssl
import time
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, TypeVar

import certifi
import httpx
import msgspec
import structlog
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.util import await_only

from core.connectors.models import ConnectorAccount
from core.crypto.envelope import TenantCipher
from core.db.base import utcnow
from core.db.context import require_tenant, tenant_context
from core.db.session import Database, get_scoped
from core.plugin_host import PluginHost
from plugins import ConnectorContext, secret_fields

log = structlog.get_logger("kaquan.connectors")
T = TypeVar("T")

#: Seconds one connector call may take unless the caller says otherwise.
DEFAULT_TIMEOUT = 10.0
HTTP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """The TLS context every connector call's HTTP client uses, built once: loading the CA bundle for each
    client costs ~100 ms, which a channel's synchronous callback (8 s limit, p99 aim 200 ms) cannot pay."""
    return ssl.create_default_context(cafile=certifi.where())


_transports: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncHTTPTransport] = (
    weakref.WeakKeyDictionary()
)


def shared_transport() -> httpx.AsyncHTTPTransport:
    """The connection pool every connector call of this event loop shares (one TLS context, kept-alive
    connections: a channel's endpoint is not dialled and TLS-handshaken again for every call)."""
    loop = asyncio.get_running_loop()
    transport = _transports.get(loop)
    if transport is None:
        transport = _transports[loop] = httpx.AsyncHTTPTransport(verify=ssl_context())
    return transport


def connector_http() -> httpx.AsyncClient:
    """An HTTP client for one connector call: its own headers and no cookie jar (nothing a connector sets
    on it reaches another account's call), over the loop's shared pool. Never closed: closing it would
    close the shared pool."""
    no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    return httpx.AsyncClient(transport=shared_transport(), timeout=HTTP_TIMEOUT, cookies=no_cookies,
                             trust_env=False)


#: Seconds a success on an account's health is not written again (a failure is always written at once).
HEALTH_QUIET = 15.0
_healthy: dict[uuid.UUID, float] = {}


class AccountUnavailable(LookupError):
    """No such account for this tenant, or it is not active (paused, disconnected), or its connector is gone."""

    def __init__(self, account_id: uuid.UUID, reason: str) -> None:
        super().__init__(f"connector account {account_id} is not usable: {reason}")
        self.account_id = account_id
        self.reason = reason


class ConnectorCallFailed(RuntimeError):
    """One call into a connector failed: it raised, timed out, or answered outside its contract.

    ``reason`` is ``timeout``, ``raised`` or ``bad_answer``; ``retryable`` says whether running the same
    idempotent call again may succeed. The message never carries the account's secrets.
    """

    def __init__(self, connector_id: str, method: str, reason: str, detail: str, *, retryable: bool) -> None:
        super().__init__(f"{connector_id}.{method}: {reason}: {detail}")
        self.connector_id = connector_id
        self.method = method
        self.reason = reason
        self.detail = detail
        self.retryable = retryable


def seal_secrets(cipher: TenantCipher, account_id: uuid.UUID, values: Mapping[str, Any]) -> bytes:
    """The secret settings as JSON, encrypted under the tenant's data key (bound to the account id)."""
    return cipher.encrypt(
        json.dumps(dict(values), ensure_ascii=False).encode(), b"connector:" + account_id.bytes
    )


def open_secrets(cipher: TenantCipher, account_id: uuid.UUID, blob: bytes | None) -> dict[str, Any]:
    """The account's secret settings (empty when it has none)."""
    if not blob:
        return {}
    data: dict[str, Any] = json.loads(cipher.decrypt(blob, b"connector:" + account_id.bytes))
    return data


def seal_tokens(cipher: TenantCipher, account_id: uuid.UUID, token: Mapping[str, Any]) -> bytes:
    """An OAuth2 token set, encrypted under the tenant's data key (bound to the account id)."""
    return cipher.encrypt(json.dumps(dict(token)).encode(), b"oauth:" + account_id.bytes)


def open_tokens(cipher: TenantCipher, account_id: uuid.UUID, blob: bytes | None) -> dict[str, Any]:
    """The account's OAuth2 token set (empty when it has none)."""
    if not blob:
        return {}
    data: dict[str, Any] = json.loads(cipher.decrypt(blob, b"oauth:" + account_id.bytes))
    return data


def split_config(
    config_type: type[msgspec.Struct], values: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``values`` as (public settings, secret settings) by the config Struct's ``Secret`` fields."""
    secrets = secret_fields(config_type)
    public = {k: v for k, v in values.items() if k not in secrets}
    hidden = {k: v for k, v in values.items() if k in secrets}
    return public, hidden


@dataclass
class BoundAccount:
    """An active account with its connector object and decoded config, ready to call."""

    account_id: uuid.UUID
    tenant_id: uuid.UUID
    connector_id: str
    kind: str
    connector: Any
    config: msgspec.Struct
    access_token: str = ""
    embedded: bool = False
    db: Database | None = None
    capabilities: frozenset[str] = field(default_factory=frozenset)
    #: When the caller holds a transaction (``health_session``), health is written after it ends.
    health_session: AsyncSession | None = None

    def scrub(self, text: str) -> str:
        """``text`` with every secret of the account (secret settings, tokens) replaced by ``***``."""
        return scrub(text, self.secret_values())

    def secret_values(self) -> list[str]:
        names = secret_fields(type(self.config))
        values = [str(getattr(self.config, n, "") or "") for n in names]
        return [v for v in (*values, self.access_token) if v]

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    def context(self, http: httpx.AsyncClient) -> ConnectorContext:
        bound = log.bind(
            tenant_id=str(self.tenant_id), connector=self.connector_id, account=str(self.account_id)
        )
        return ConnectorContext(
            tenant_id=self.tenant_id,
            config=self.config,
            http=http,
            log=bound,
            clock=utcnow,
            embedded=self.embedded,
            account_id=str(self.account_id),
            access_token=self.access_token,
        )

    async def call(
        self,
        method: str,
        *args: Any,
        expect: type[T] | tuple[type, ...] | None = None,
        limit: float = DEFAULT_TIMEOUT,
        refusals: tuple[type[Exception], ...] = (),
    ) -> Any:
        """``await connector.<method>(ctx, *args)``, at most ``limit`` seconds, answer checked against ``expect``.

        Raises :class:`ConnectorCallFailed` on a raise, a timeout or an answer of the wrong type, and records
        the outcome on the account's health (when the account was opened with a database). An exception of
        ``refusals`` is the contract's own answer (``plugins.BadCallback`` for a forged callback): it is
        raised as is and the connector counts as healthy, so nobody can spoil an account's health by
        posting garbage to its public route.
        """
        fn = getattr(self.connector, method, None)
        if fn is None:
            raise ConnectorCallFailed(
                self.connector_id, method, "bad_answer", "method not provided", retryable=False
            )
        try:
            result = await asyncio.wait_for(fn(self.context(connector_http()), *args), limit)
        except TimeoutError:
            await self._health(False, f"{method}: no answer within {limit:g} s")
            raise ConnectorCallFailed(
                self.connector_id, method, "timeout", f"no answer within {limit:g} s", retryable=True
            ) from None
        except Exception as exc:  # boundary: partner code; fails this call for this account only
            if refusals and isinstance(exc, refusals):
                await self._health(True, "")
                raise
            detail = self.scrub(f"{type(exc).__name__}: {str(exc)[:300]}")
            await self._health(False, f"{method}: {detail}")
            raise ConnectorCallFailed(self.connector_id, method, "raised", detail, retryable=True) from exc
        if expect is not None and not isinstance(result, expect):
            detail = f"answered {type(result).__name__}, not the contract's type"
            await self._health(False, f"{method}: {detail}")
            raise ConnectorCallFailed(self.connector_id, method, "bad_answer", detail, retryable=False)
        await self._health(True, "")
        return result

    async def _health(self, ok: bool, error: str) -> None:
        """Record the outcome: a failure at once, a success only when the account was not known healthy in
        this process in the last :data:`HEALTH_QUIET` seconds (the health row is one per account: writing
        it on every call of a burst made every concurrent call queue on that row's lock)."""
        if self.db is None:
            return
        now = time.monotonic()
        if ok:
            if now - _healthy.get(self.account_id, -HEALTH_QUIET) < HEALTH_QUIET:
                return
            _healthy[self.account_id] = now  # before the write: a burst of calls writes it once
        else:
            _healthy.pop(self.account_id, None)
        if self.health_session is not None:
            record_health_after(self.health_session, self.db, self.account_id, ok, self.scrub(error))
            return
        await write_health(self.db, self.account_id, ok, self.scrub(error))


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with each of ``secrets`` (at least 4 characters long) replaced by ``***``."""
    for value in sorted(secrets, key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text


def health_values(ok: bool, error: str) -> dict[str, Any]:
    """The account columns one call's outcome sets."""
    now = utcnow()
    if ok:
        return {"last_ok_at": now, "consecutive_failures": 0}
    return {
        "last_error_at": now,
        "last_error": error[:500],
        "consecutive_failures": ConnectorAccount.consecutive_failures + 1,
    }


async def write_health(db: Database, account_id: uuid.UUID, ok: bool, error: str) -> None:
    """Record one call's outcome on the account, in a transaction of its own (never fails the caller)."""
    try:
        async with db.transaction() as session:
            await session.execute(
                update(ConnectorAccount)
                .where(ConnectorAccount.id == account_id)
                .values(**health_values(ok, error))
            )
    except Exception as exc:  # boundary: health is a record of the call, never a reason to fail it
        log.warning(
            "connector_health_not_recorded", account=str(account_id), error=type(exc).__name__, detail=str(exc)[:200]
        )


_pending_health: set[asyncio.Task[None]] = set()


def record_health_after(
    session: AsyncSession, db: Database, account_id: uuid.UUID, ok: bool, error: str
) -> None:
    """Record the outcome once ``session``'s transaction has ended, committed or rolled back.

    A job that calls a connector inside its own transaction (a notification claimed with ``run_once``)
    may roll that transaction back to be retried; the failure must still show on the account's health,
    and on SQLite a second write transaction cannot start while the caller's holds the lock. The record
    is written as the transaction ends (SQLAlchemy's ``await_only`` from the session's greenlet), so it is
    on the account when the caller's ``commit``/``rollback`` returns.
    """
    fired = False
    tenant = require_tenant()
    sync = session.sync_session

    def committed(_session: Any) -> None:
        if not sync.in_nested_transaction():  # a released savepoint is not the end of the transaction
            fire()

    def rolled_back(_session: Any, previous: Any) -> None:
        if previous.parent is None:  # not a savepoint: the caller's transaction has ended
            fire()

    def fire(*_: Any) -> None:
        nonlocal fired
        if fired:
            return
        fired = True
        write = _write_as(tenant, db, account_id, ok, error)
        try:
            await_only(write)
        except Exception:  # boundary: no greenlet to run it in (a sync caller): write it as a task instead
            write.close()
            task = asyncio.get_running_loop().create_task(_write_as(tenant, db, account_id, ok, error))
            _pending_health.add(task)
            task.add_done_callback(_pending_health.discard)

    event.listen(sync, "after_commit", committed)
    event.listen(sync, "after_soft_rollback", rolled_back)


async def _write_as(tenant: uuid.UUID, db: Database, account_id: uuid.UUID, ok: bool, error: str) -> None:
    with tenant_context(tenant):
        await write_health(db, account_id, ok, error)


async def health_recorded() -> None:
    """Wait for the health records still being written after their callers' transactions (tests, shutdown)."""
    while _pending_health:
        await asyncio.gather(*list(_pending_health), return_exceptions=True)


async def bind_account(
    session: AsyncSession,
    cipher: TenantCipher,
    plugins: PluginHost,
    account_id: uuid.UUID,
    *,
    db: Database | None = None,
    embedded: bool = False,
    kind: str | None = None,
    allow_paused: bool = False,
    health_session: AsyncSession | None = None,
) -> BoundAccount:
    """The tenant's account ``account_id``, decrypted and bound to its connector, ready to :meth:`~BoundAccount.call`.

    Raises :class:`AccountUnavailable` when the account is not this tenant's, not of ``kind``, not active
    (unless ``allow_paused``), or its connector is no longer installed or enabled.
    """
    account = await get_scoped(session, ConnectorAccount, account_id)
    if account is None:
        raise AccountUnavailable(account_id, "not_found")
    if kind is not None and account.kind != kind:
        raise AccountUnavailable(account_id, "wrong_kind")
    if account.status != "active" and not (allow_paused and account.status == "paused"):
        raise AccountUnavailable(account_id, account.status)
    try:
        connector = plugins.connector(account.connector_id)
    except LookupError:
        raise AccountUnavailable(account_id, "connector_not_installed") from None
    values = {**account.config, **open_secrets(cipher, account.id, account.secrets)}
    config = plugins.connector_config(account.connector_id, values)
    token = open_tokens(cipher, account.id, account.oauth_tokens)
    return BoundAccount(
        account_id=account.id,
        tenant_id=require_tenant(),
        connector_id=account.connector_id,
        kind=account.kind,
        connector=connector,
        config=config,
        access_token=str(token.get("access_token", "")),
        embedded=embedded,
        db=db,
        capabilities=frozenset(connector.info.capabilities),
        health_session=health_session,
    )


#: Seconds a bound account (its decrypted config, tokens and status) is reused in this process. A change made
#: through the ORM in this process (pause, resume, config, tokens, disconnect) drops it at once; one made by
#: another process is seen within this many seconds.
BIND_TTL = 5.0
_bound: dict[tuple[uuid.UUID, uuid.UUID, str | None, int], tuple[float, BoundAccount, TenantCipher]] = {}


async def bind_cached(
    db: Database, keys: Any, plugins: PluginHost, account_id: uuid.UUID, *, kind: str | None = None,
    embedded: bool = False, session: AsyncSession | None = None,
) -> tuple[BoundAccount, TenantCipher]:
    """:func:`bind_account` and the tenant's cipher, reused for :data:`BIND_TTL` seconds per process (no
    transaction at all on a hit): for the hot paths that bind the same account again and again (channel
    callbacks, deliveries). Health is written in transactions of its own (``health_session`` is not used).
    ``keys`` is the kernel's :class:`core.crypto.services.KeyService`. A caller inside a transaction passes
    its ``session``: a miss reads there (a second connection per caller could exhaust the pool)."""
    key = (require_tenant(), account_id, kind, id(plugins))
    hit = _bound.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < BIND_TTL:
        return replace(hit[1], db=db, embedded=embedded), hit[2]
    if session is not None:
        cipher = await keys.cipher(session)
        bound = await bind_account(session, cipher, plugins, account_id, db=db, embedded=embedded, kind=kind)
    else:
        async with db.transaction() as own:
            cipher = await keys.cipher(own)
            bound = await bind_account(own, cipher, plugins, account_id, db=db, embedded=embedded, kind=kind)
    _prune(_bound, now)
    _bound[key] = (now, bound, cipher)
    return bound, cipher


#: Above this many entries a cache drops its expired ones before adding (a process serving many tenants
#: would otherwise keep every account it ever bound, decrypted settings included).
CACHE_PRUNE_AT = 1024


def _prune(cache: dict[Any, Any], now: float) -> None:
    """Drop the entries of ``cache`` (values start with the monotonic time they were stored) that expired."""
    if len(cache) < CACHE_PRUNE_AT:
        return
    for key in [k for k, v in cache.items() if now - v[0] >= BIND_TTL]:
        cache.pop(key, None)


def remember_route(account_id: uuid.UUID, tenant_id: uuid.UUID) -> None:
    """Keep a public route's account → tenant look-up for :data:`BIND_TTL` seconds."""
    now = time.monotonic()
    _prune(routes, now)
    routes[account_id] = (now, tenant_id)


#: account id → (when read, tenant id): the public routes' look-up, reused for :data:`BIND_TTL` seconds
#: (see :func:`core.connectors.services.find_route`).
routes: dict[uuid.UUID, tuple[float, uuid.UUID]] = {}


def forget_account(account_id: uuid.UUID) -> None:
    """Drop what this process keeps of the account (bound config, route, health state)."""
    routes.pop(account_id, None)
    for key in [k for k in _bound if k[1] == account_id]:
        _bound.pop(key, None)
    _healthy.pop(account_id, None)


@event.listens_for(ConnectorAccount, "after_update")
@event.listens_for(ConnectorAccount, "after_delete")
def _account_changed(_mapper: Any, _connection: Any, target: ConnectorAccount) -> None:
    forget_account(target.id)


def token_expiry(token: Mapping[str, Any]) -> dt.datetime | None:
    """When an OAuth2 token set expires (``expires_at`` epoch seconds, or ``expires_in`` from now)."""
    if token.get("expires_at"):
        return dt.datetime.fromtimestamp(float(token["expires_at"]), dt.UTC)
    if token.get("expires_in"):
        return utcnow() + dt.timedelta(seconds=float(token["expires_in"]))
    return None
