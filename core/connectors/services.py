"""Connector accounts: the rules shared by the API, the console, the jobs and the notification routing.

- A tenant connects a connector its plan allows (``Plan.allowed_connectors``) that is installed and enabled.
  Its settings are checked against the connector's config Struct; the fields typed ``plugins.Secret`` are
  sealed under the tenant's data key (bound to the account id) and only their names are kept in clear.
- Connecting writes the platform :class:`~core.connectors.models.AccountRoute` row so that the public
  callback route can find the account's tenant; disconnecting erases secrets and tokens and the route.
- An account of a connector with capability ``oauth`` starts ``paused`` (``awaiting_authorisation``) until
  the shop owner has authorised it (:mod:`core.connectors.oauth`): nothing calls it before.
- Every call into the connector goes through :func:`core.connectors.calls.bind_account` (timeout, contract
  check, health); :func:`check_account` is the connection test.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec
import msgspec.inspect as mi
import structlog
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.context import current_actor
from core.audit.services import record
from core.connectors import calls
from core.connectors.calls import (
    AccountUnavailable,
    ConnectorCallFailed,
    bind_account,
    open_secrets,
    seal_secrets,
    split_config,
)
from core.connectors.models import ACCOUNT_STATUSES, AccountRoute, ConnectorAccount
from core.connectors.schemas import (
    AccountConnect,
    AccountOut,
    AccountPage,
    AccountUpdate,
    CheckOut,
    ConnectorOut,
    HealthOut,
)
from core.crypto.envelope import TenantCipher
from core.db.base import utcnow
from core.db.context import cross_tenant, require_tenant
from core.db.ids import new_id
from core.db.paging import keyset_page
from core.db.session import Database, get_scoped
from core.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from core.events.services import emit
from core.plugin_host import PluginHost
from plugins import CheckResult, config_schema, secret_fields
from plugins.protocols import Connector
from tenants.registry import get_tenant

log = structlog.get_logger("kaquan.connectors")

MAX_PAGE = 200
#: Seconds a connection test may take.
CHECK_TIMEOUT = 15.0
AWAITING_AUTHORISATION = "awaiting_authorisation"


class ConnectorNotAllowed(Forbidden):
    code = "connector_not_allowed"


class UnknownConnector(ValidationFailed):
    code = "connector_unknown"


class AccountNotFound(NotFound):
    code = "connector_account_not_found"


class AccountStateConflict(Conflict):
    code = "connector_account_state"


class AccountNameTaken(Conflict):
    code = "connector_account_name_taken"


class ConfigInvalid(ValidationFailed):
    code = "connector_config_invalid"


# --- connectors ----------------------------------------------------------------------------------------------


def is_oauth(connector: Connector) -> bool:
    """Whether the connector's accounts are authorised through the OAuth2 redirect flow."""
    return "oauth" in connector.info.capabilities and callable(getattr(connector, "oauth_client", None))


def connector_out(connector: Connector) -> ConnectorOut:
    info = connector.info
    return ConnectorOut(
        id=info.id,
        kind=info.kind,
        display_name=info.display_name,
        display_name_zh=info.display_name_zh or info.display_name,
        description=info.description,
        description_zh=info.description_zh or info.description,
        version=info.version,
        capabilities=sorted(info.capabilities),
        config_schema=config_schema(info.config),
        secret_fields=sorted(secret_fields(info.config)),
        oauth=is_oauth(connector),
    )


async def available_connectors(
    session: AsyncSession, plugins: PluginHost, kind: str | None = None
) -> list[ConnectorOut]:
    """The installed, enabled connectors the tenant's plan allows (optionally of one kind), by id."""
    _tenant, plan = await get_tenant(session, require_tenant())
    allowed = {i.id for i in plugins.allowed_for_plan(plan, kind)}
    return [connector_out(c) for cid, c in plugins.connectors().items() if cid in allowed]


async def allowed_connector(session: AsyncSession, plugins: PluginHost, connector_id: str) -> Connector:
    """The connector ``connector_id`` if installed, enabled and allowed by the tenant's plan."""
    try:
        connector = plugins.connector(connector_id)
    except LookupError:
        raise UnknownConnector(
            f"No connector {connector_id!r} is installed",
            f"未安装连接器 {connector_id!r}",
            errors=[FieldError(field="connector_id", message="unknown connector", code="unknown")],
        ) from None
    _tenant, plan = await get_tenant(session, require_tenant())
    if not plugins.allowed(plan, connector_id):
        raise ConnectorNotAllowed(
            f"Your plan {plan.code!r} does not include the connector {connector_id!r}",
            f"当前套餐 {plan.code!r} 不包含连接器 {connector_id!r}",
            extra={"connector_id": connector_id, "plan": plan.code},
        )
    return connector


# --- settings ------------------------------------------------------------------------------------------------

_AT_FIELD = re.compile(r"at `\$\.([A-Za-z0-9_]+)|missing required field `([A-Za-z0-9_]+)`")


def field_names(config_type: type[msgspec.Struct]) -> list[str]:
    info = mi.type_info(config_type)
    assert isinstance(info, mi.StructType)  # the plugin host checked it is a Struct type
    return [f.name for f in info.fields]


def check_config(config_type: type[msgspec.Struct], values: Mapping[str, Any]) -> msgspec.Struct:
    """``values`` decoded into the connector's config Struct, or :class:`ConfigInvalid` naming the field.

    Text is read as the field's type (forms send text). A field the Struct does not have is refused.
    The refusal never repeats a value (it may be a secret).
    """
    known = set(field_names(config_type))
    unknown = sorted(k for k in values if k not in known)
    if unknown:
        raise ConfigInvalid(
            f"Unknown settings: {', '.join(unknown)}",
            f"未知的设置项：{', '.join(unknown)}",
            errors=[FieldError(field=f"config.{k}", message="unknown setting", code="unknown") for k in unknown],
        )
    try:
        return msgspec.convert(dict(values), config_type, strict=False)
    except msgspec.ValidationError as exc:
        found = _AT_FIELD.search(str(exc))
        name = (found.group(1) or found.group(2)) if found else ""
        message = str(exc).split(" - at ", 1)[0]
        if found and found.group(2):
            raise ConfigInvalid(
                f"The setting {name} is required",
                f"请填写设置项 {name}",
                errors=[FieldError(field=f"config.{name}", message="required", code="required")],
            ) from None
        raise ConfigInvalid(
            f"The setting {name or 'config'} is not valid: {message}",
            f"设置项 {name or 'config'} 不正确：{message}",
            errors=[FieldError(field=f"config.{name}" if name else "config", message=message, code="invalid")],
        ) from None


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as given, text trimmed; an empty text leaves the field to its default."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, str):
            v = v.strip()
            if v == "":
                continue
        out[str(k)] = v
    return out


def _store_config(
    account: ConnectorAccount, cipher: TenantCipher, config_type: type[msgspec.Struct], values: dict[str, Any]
) -> None:
    checked = check_config(config_type, values)
    public, hidden = split_config(config_type, msgspec.to_builtins(checked))
    hidden = {k: v for k, v in hidden.items() if v not in ("", None)}
    account.config = public
    account.secrets = seal_secrets(cipher, account.id, hidden) if hidden else None
    account.secret_names = sorted(hidden)


# --- accounts ------------------------------------------------------------------------------------------------


def health_out(a: ConnectorAccount) -> HealthOut:
    if a.status != "active":
        state = a.status
    elif a.last_ok_at is None and a.last_error_at is None:
        state = "unknown"
    elif a.last_error_at is not None and (a.last_ok_at is None or a.last_error_at > a.last_ok_at):
        state = "failing"
    else:
        state = "ok"
    return HealthOut(
        account_id=a.id,
        state=state,
        status=a.status,
        status_reason=a.status_reason,
        last_ok_at=a.last_ok_at,
        last_error_at=a.last_error_at,
        last_error=a.last_error,
        consecutive_failures=a.consecutive_failures,
        token_expires_at=a.token_expires_at,
    )


def account_out(a: ConnectorAccount, plugins: PluginHost | None = None) -> AccountOut:
    oauth = False
    if plugins is not None:
        connector = plugins.connectors().get(a.connector_id)
        oauth = connector is not None and is_oauth(connector)
    return AccountOut(
        id=a.id,
        connector_id=a.connector_id,
        kind=a.kind,
        name=a.name,
        status=a.status,
        status_reason=a.status_reason,
        config=dict(a.config or {}),
        secrets_set=list(a.secret_names or []),
        oauth=oauth or a.oauth_tokens is not None,
        authorised=a.oauth_tokens is not None,
        authorised_at=a.authorised_at,
        health=health_out(a),
        created_at=a.created_at,
        updated_at=a.updated_at,
    )


async def get_account(session: AsyncSession, account_id: uuid.UUID) -> ConnectorAccount:
    account = await get_scoped(session, ConnectorAccount, account_id)
    if account is None:
        raise AccountNotFound("Connector account not found", "连接账户不存在")
    return account


async def _name_free(session: AsyncSession, name: str, except_id: uuid.UUID | None = None) -> None:
    stmt = select(ConnectorAccount.id).where(ConnectorAccount.name == name)
    if except_id is not None:
        stmt = stmt.where(ConnectorAccount.id != except_id)
    if (await session.execute(stmt)).first() is not None:
        raise AccountNameTaken(
            f"An account named {name!r} exists already (disconnected accounts keep their name)",
            f"已存在名为 {name!r} 的账户（已断开的账户仍保留名称）",
            errors=[FieldError(field="name", message="name taken", code="taken")],
        )


async def connect(
    session: AsyncSession, cipher: TenantCipher, plugins: PluginHost, data: AccountConnect
) -> ConnectorAccount:
    """Connect an account of a connector the plan allows, with its settings checked and secrets sealed."""
    connector = await allowed_connector(session, plugins, data.connector_id)
    name = data.name.strip()
    if not name:
        raise ValidationFailed(
            "Give the account a name", "请填写账户名称", errors=[FieldError(field="name", message="empty", code="required")]
        )
    await _name_free(session, name)
    info = connector.info
    actor = current_actor()
    account = ConnectorAccount(
        id=new_id(),
        connector_id=info.id,
        kind=info.kind,
        name=name,
        status="active",
        config={},
        created_by=uuid.UUID(actor.id) if actor.type == "user" else None,
    )
    _store_config(account, cipher, info.config, _clean(data.config))
    if is_oauth(connector):
        account.status, account.status_reason = "paused", AWAITING_AUTHORISATION
    session.add(account)
    await session.flush()
    session.add(AccountRoute(account_id=account.id))
    await session.flush()
    record(
        session,
        "connector.account_connected",
        "connector_account",
        account.id,
        {"connector_id": info.id, "kind": info.kind, "name": name, "settings": sorted(account.config)},
    )
    emit(session, "connector.account_connected", account.id, {"connector_id": info.id, "name": name})
    log.info("connector_account_connected", account=str(account.id), connector=info.id)
    return account


async def list_accounts(
    session: AsyncSession,
    *,
    kind: str | None = None,
    status: str | None = None,
    connector_id: str | None = None,
    cursor: uuid.UUID | None = None,
    limit: int = 50,
    plugins: PluginHost | None = None,
) -> AccountPage:
    """The tenant's accounts, newest first; filters by kind, status and connector."""
    stmt = select(ConnectorAccount)
    if kind:
        stmt = stmt.where(ConnectorAccount.kind == kind)
    if status:
        if status not in ACCOUNT_STATUSES:
            raise ValidationFailed(
                f"Unknown status {status!r}",
                f"未知状态 {status!r}",
                errors=[FieldError(field="status", message="unknown status", code="unknown")],
            )
        stmt = stmt.where(ConnectorAccount.status == status)
    if connector_id:
        stmt = stmt.where(ConnectorAccount.connector_id == connector_id)
    page = await keyset_page(session, stmt, ConnectorAccount.id, cursor=cursor, limit=min(limit, MAX_PAGE))
    return AccountPage([account_out(a, plugins) for a in page.items], page.next_cursor)


def connector_of(plugins: PluginHost, account: ConnectorAccount) -> Connector:
    try:
        return plugins.connector(account.connector_id)
    except LookupError:
        raise AccountStateConflict(
            f"The connector {account.connector_id!r} is no longer installed or enabled",
            f"连接器 {account.connector_id!r} 已卸载或停用",
        ) from None


async def update_account(
    session: AsyncSession, cipher: TenantCipher, plugins: PluginHost, account_id: uuid.UUID, data: AccountUpdate
) -> ConnectorAccount:
    """Rename the account and/or change settings; a secret left out or empty keeps its stored value."""
    account = await get_account(session, account_id)
    if account.status == "disconnected":
        raise AccountStateConflict("A disconnected account cannot be changed", "已断开的账户不能修改")
    changed: dict[str, Any] = {}
    if not isinstance(data.name, msgspec.UnsetType) and data.name.strip() != account.name:
        name = data.name.strip()
        await _name_free(session, name, account.id)
        changed["name"] = [account.name, name]
        account.name = name
    if not isinstance(data.config, msgspec.UnsetType):
        connector = connector_of(plugins, account)
        given = _clean(data.config)
        merged = {**account.config, **open_secrets(cipher, account.id, account.secrets), **given}
        _store_config(account, cipher, connector.info.config, merged)
        changed["settings"] = sorted(given)  # names only: values may be secrets
    if changed:
        account.updated_at = utcnow()
        record(session, "connector.account_updated", "connector_account", account.id, changed)
    return account


async def pause(session: AsyncSession, account_id: uuid.UUID, reason: str = "") -> ConnectorAccount:
    """Stop calling the account (kept with its settings); pausing a paused account changes nothing."""
    account = await get_account(session, account_id)
    if account.status == "disconnected":
        raise AccountStateConflict("A disconnected account cannot be paused", "已断开的账户不能暂停")
    if account.status == "paused":
        return account
    await set_paused(session, account, reason.strip() or "paused")
    return account


async def set_paused(session: AsyncSession, account: ConnectorAccount, reason: str) -> None:
    """Pause ``account`` with ``reason`` (audited, event ``connector.account_paused``)."""
    account.status, account.status_reason, account.updated_at = "paused", reason[:500], utcnow()
    record(session, "connector.account_paused", "connector_account", account.id, {"reason": reason[:500]})
    emit(
        session,
        "connector.account_paused",
        account.id,
        {"connector_id": account.connector_id, "name": account.name, "reason": reason[:500]},
    )


async def resume(session: AsyncSession, plugins: PluginHost, account_id: uuid.UUID) -> ConnectorAccount:
    """Call the account again: the plan must still allow its connector; an OAuth account must be authorised."""
    account = await get_account(session, account_id)
    if account.status == "disconnected":
        raise AccountStateConflict("A disconnected account cannot be resumed", "已断开的账户不能恢复")
    if account.status == "active":
        return account
    connector = await allowed_connector(session, plugins, account.connector_id)
    if is_oauth(connector) and account.oauth_tokens is None:
        raise AccountStateConflict(
            "Authorise the shop first: the account has no OAuth token",
            "请先完成店铺授权：该账户还没有 OAuth 令牌",
            code="connector_account_not_authorised",
        )
    account.status, account.status_reason, account.updated_at = "active", "", utcnow()
    record(session, "connector.account_resumed", "connector_account", account.id, {})
    emit(session, "connector.account_resumed", account.id, {"connector_id": account.connector_id, "name": account.name})
    return account


async def disconnect(session: AsyncSession, account_id: uuid.UUID) -> ConnectorAccount:
    """Erase the account's secrets and tokens and its callback route; the row stays for the history."""
    account = await get_account(session, account_id)
    if account.status == "disconnected":
        return account
    account.status, account.status_reason, account.updated_at = "disconnected", "", utcnow()
    account.secrets, account.secret_names, account.oauth_tokens = None, [], None
    account.oauth_state, account.token_expires_at = None, None
    await session.execute(delete(AccountRoute).where(AccountRoute.account_id == account.id))
    record(session, "connector.account_disconnected", "connector_account", account.id, {})
    emit(
        session,
        "connector.account_disconnected",
        account.id,
        {"connector_id": account.connector_id, "name": account.name},
    )
    return account


async def check_account(
    db: Database,
    session: AsyncSession,
    cipher: TenantCipher,
    plugins: PluginHost,
    account_id: uuid.UUID,
    *,
    embedded: bool = False,
) -> CheckOut:
    """Test the account's settings with the connector's ``check`` (paused accounts too).

    A connector that raises, hangs past :data:`CHECK_TIMEOUT` or answers nonsense gives ``ok: false``
    with a detail safe to show (secrets scrubbed); the outcome is recorded on the account's health once
    ``session``'s transaction has ended (the caller's transaction may hold the database's write lock).
    """
    account = await get_account(session, account_id)
    now = utcnow()
    try:
        bound = await bind_account(
            session, cipher, plugins, account.id, db=db, embedded=embedded, allow_paused=True, health_session=session
        )
    except AccountUnavailable as exc:
        return CheckOut(account_id=account.id, ok=False, tested=False, detail=exc.reason, checked_at=now)
    if not callable(getattr(bound.connector, "check", None)):
        return CheckOut(
            account_id=account.id,
            ok=True,
            tested=False,
            detail="this connector offers no connection test; its settings are valid",
            checked_at=now,
        )
    try:
        result: CheckResult = await bound.call("check", expect=CheckResult, limit=CHECK_TIMEOUT)
    except ConnectorCallFailed as exc:
        return CheckOut(account_id=account.id, ok=False, tested=True, detail=f"{exc.reason}: {exc.detail}", checked_at=now)
    return CheckOut(
        account_id=account.id, ok=result.ok, tested=True, detail=bound.scrub(result.detail[:500]), checked_at=now
    )


async def find_route(db: Database, account_id: uuid.UUID) -> uuid.UUID | None:
    """The tenant of connector account ``account_id`` (``None``: no such connected account), for public routes
    that carry an account id and no tenant login (channel callbacks, the OAuth2 redirect). A route found is
    reused for a few seconds in this process (``calls.BIND_TTL``; a disconnect here drops it at once)."""
    hit = calls.routes.get(account_id)
    if hit is not None and time.monotonic() - hit[0] < calls.BIND_TTL:
        return hit[1]
    async with db.transaction() as session:
        with cross_tenant("public connector route: find the account's tenant"):
            stmt = select(AccountRoute.tenant_id).where(AccountRoute.account_id == account_id)
            tenant_id = (await session.execute(stmt)).scalar_one_or_none()
    if tenant_id is not None:
        calls.remember_route(account_id, tenant_id)
    return tenant_id


async def notifier_account_for(
    session: AsyncSession, plugins: PluginHost, channel: str
) -> ConnectorAccount | None:
    """The tenant's active notifier account that delivers ``channel`` (the oldest one), if any."""
    ids = [c.info.id for c in plugins.notifiers_for(channel)]
    if not ids:
        return None
    stmt = (
        select(ConnectorAccount)
        .where(
            ConnectorAccount.kind == "notifier",
            ConnectorAccount.status == "active",
            ConnectorAccount.connector_id.in_(ids),
        )
        .order_by(ConnectorAccount.id)
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()
