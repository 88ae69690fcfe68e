"""Shop authorisation by OAuth2 authorisation code (authlib), and the token refresh before expiry.

1. :func:`start_authorization` asks the connector for its :class:`plugins.OAuthClientSpec`, makes a state
   ``<account id hex>.<random>`` (its SHA-256 is kept on the account) and returns the authorisation URL
   (authlib's ``create_authorization_url``) with the redirect URI ``<base_url>/oauth/connectors/callback``.
2. The channel sends the shop owner back to :data:`REDIRECT_PATH` (public: the owner's browser may hold no
   session). :func:`finish_authorization` finds the tenant through the platform ``AccountRoute`` (the
   account id is in the state), checks the state once (it is cleared before the code is exchanged),
   exchanges the code (authlib ``fetch_token``), seals the token set under the tenant's data key and
   makes the account active.
3. :func:`refresh_due` (the periodic job ``refresh_connector_tokens``) refreshes every active account
   whose token expires within :data:`REFRESH_MARGIN`. A refusal by the channel (an OAuth error such as
   ``invalid_grant``), or any failure once the token has expired, pauses the account, emits
   ``connector.token_refresh_failed`` and e-mails the tenant's owner; a transient failure (network, 5xx)
   while the token is still valid is recorded on the health and tried again at the next run.

Tokens and client secrets never appear in logs, answers or errors.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import structlog
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.connectors.calls import open_secrets, open_tokens, scrub, seal_tokens, token_expiry, write_health
from core.connectors.models import ConnectorAccount
from core.connectors.schemas import AuthorizationStart
from core.connectors.services import (
    AWAITING_AUTHORISATION,
    AccountStateConflict,
    connector_of,
    find_route,
    get_account,
    is_oauth,
    set_paused,
)
from core.crypto.envelope import TenantCipher
from core.crypto.services import KeyService
from core.db.base import utcnow
from core.db.context import tenant_context
from core.db.session import Database
from core.errors import DomainError, NotFound, ValidationFailed
from core.events.services import emit
from core.jobs.outbox import enqueue
from core.plugin_host import PluginHost
from core.settings import Settings
from plugins import OAuthClientSpec
from tenants.registry import get_tenant

log = structlog.get_logger("kaquan.connectors.oauth")

REDIRECT_PATH = "/oauth/connectors/callback"
#: Tokens expiring within this are refreshed by the periodic job (which runs every 10 minutes).
REFRESH_MARGIN = dt.timedelta(minutes=30)
#: Seconds the channel's token endpoint may take.
TOKEN_TIMEOUT = 15.0
NOTIFY_ACTOR = "send_notification"


class AuthorizationFailed(ValidationFailed):
    code = "connector_authorisation_failed"


class AuthorizationStateInvalid(NotFound):
    code = "connector_authorisation_state"


def redirect_uri(settings: Settings) -> str:
    return settings.base_url.rstrip("/") + REDIRECT_PATH


def _digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def client_spec(plugins: PluginHost, cipher: TenantCipher, account: ConnectorAccount) -> tuple[OAuthClientSpec, list[str]]:
    """The connector's OAuth client for the account, and the secret values to scrub from any message."""
    connector = connector_of(plugins, account)
    if not is_oauth(connector):
        raise AccountStateConflict(
            f"The connector {account.connector_id!r} is not authorised by OAuth2",
            f"连接器 {account.connector_id!r} 不使用 OAuth2 授权",
        )
    hidden = open_secrets(cipher, account.id, account.secrets)
    values = {**account.config, **hidden}
    try:
        config = plugins.connector_config(account.connector_id, values)
        spec = getattr(connector, "oauth_client")(config)  # noqa: B009  # optional method: is_oauth checked it
        if not isinstance(spec, OAuthClientSpec):
            raise TypeError(f"oauth_client returned {type(spec).__name__}, not OAuthClientSpec")
    except Exception as exc:  # boundary: partner code describing its OAuth client
        detail = scrub(f"{type(exc).__name__}: {exc}"[:300], [str(v) for v in hidden.values()])
        raise AuthorizationFailed(
            f"The connector could not describe its OAuth client ({detail})",
            f"连接器无法提供 OAuth 客户端信息（{detail}）",
        ) from None
    return spec, [str(v) for v in hidden.values() if v] + [spec.client_secret]


def _client(spec: OAuthClientSpec, settings: Settings) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=spec.client_id,
        client_secret=spec.client_secret,
        scope=spec.scope or None,
        redirect_uri=redirect_uri(settings),
        timeout=httpx.Timeout(TOKEN_TIMEOUT, connect=5.0),
    )


async def start_authorization(
    session: AsyncSession, cipher: TenantCipher, plugins: PluginHost, settings: Settings, account_id: uuid.UUID
) -> AuthorizationStart:
    """The URL to send the shop owner to; a new start replaces any earlier unfinished one."""
    account = await get_account(session, account_id)
    if account.status == "disconnected":
        raise AccountStateConflict("A disconnected account cannot be authorised", "已断开的账户不能授权")
    spec, _ = client_spec(plugins, cipher, account)
    state = f"{account.id.hex}.{secrets.token_urlsafe(32)}"
    async with _client(spec, settings) as client:
        url, _state = client.create_authorization_url(spec.authorize_url, state=state)
    account.oauth_state = _digest(state)
    record(session, "connector.authorisation_started", "connector_account", account.id, {})
    return AuthorizationStart(account_id=account.id, authorize_url=url, redirect_uri=redirect_uri(settings))


@dataclass(frozen=True)
class _Claimed:
    account_id: uuid.UUID
    tenant_id: uuid.UUID
    spec: OAuthClientSpec
    secrets: list[str]


def account_of_state(state: str) -> uuid.UUID:
    head, _, rest = state.partition(".")
    try:
        if not rest:
            raise ValueError("no random part")
        return uuid.UUID(hex=head)
    except ValueError:
        raise AuthorizationStateInvalid(
            "This authorisation link is not valid", "授权链接无效", code="connector_authorisation_state"
        ) from None


async def _claim_state(db: Database, keys: KeyService, plugins: PluginHost, state: str) -> _Claimed:
    account_id = account_of_state(state)
    invalid = AuthorizationStateInvalid(
        "This authorisation link is not valid or was used already", "授权链接无效或已被使用"
    )
    tenant_id = await find_route(db, account_id)
    if tenant_id is None:
        raise invalid
    with tenant_context(tenant_id):
        async with db.transaction() as session:
            account = await session.get(ConnectorAccount, (tenant_id, account_id))
            if account is None or not account.oauth_state:
                raise invalid
            if not hmac.compare_digest(account.oauth_state, _digest(state)):
                raise invalid
            account.oauth_state = None  # single use, before the code is exchanged
            cipher = await keys.cipher(session)
            spec, hidden = client_spec(plugins, cipher, account)
    return _Claimed(account_id, tenant_id, spec, hidden)


async def finish_authorization(
    db: Database,
    keys: KeyService,
    plugins: PluginHost,
    settings: Settings,
    *,
    state: str,
    code: str,
    error: str = "",
) -> tuple[uuid.UUID, uuid.UUID]:
    """Complete the flow the channel redirected back from; returns (tenant id, account id)."""
    claimed = await _claim_state(db, keys, plugins, state)
    with tenant_context(claimed.tenant_id):
        if error or not code:
            reason = scrub((error or "no code")[:100], claimed.secrets)
            await _record_failure(db, claimed.account_id, f"authorisation refused: {reason}")
            raise AuthorizationFailed(
                f"The shop owner did not authorise the account ({reason})", f"店铺未授权该账户（{reason}）"
            )
        try:
            async with _client(claimed.spec, settings) as client:
                token = await asyncio.wait_for(
                    client.fetch_token(claimed.spec.token_url, code=code, grant_type="authorization_code"),
                    TOKEN_TIMEOUT,
                )
        except (OAuthError, httpx.HTTPError, TimeoutError, ValueError) as exc:
            detail = scrub(_describe(exc), claimed.secrets)
            await _record_failure(db, claimed.account_id, f"code exchange failed: {detail}")
            raise AuthorizationFailed(
                f"The channel did not exchange the authorisation code ({detail})",
                f"渠道未能换取授权令牌（{detail}）",
            ) from None
        async with db.transaction() as session:
            cipher = await keys.cipher(session)
            account = await get_account(session, claimed.account_id)
            _store_token(account, cipher, dict(token))
            account.authorised_at = utcnow()
            if account.status == "paused" and account.status_reason in (AWAITING_AUTHORISATION, "token_refresh_failed"):
                account.status, account.status_reason = "active", ""
            record(session, "connector.account_authorised", "connector_account", account.id, {})
            emit(session, "connector.account_authorised", account.id, {"connector_id": account.connector_id})
    log.info("connector_account_authorised", account=str(claimed.account_id))
    return claimed.tenant_id, claimed.account_id


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OAuthError):
        return f"{exc.error or 'oauth_error'}"[:200]
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _store_token(account: ConnectorAccount, cipher: TenantCipher, token: Mapping[str, Any]) -> None:
    previous = open_tokens(cipher, account.id, account.oauth_tokens)
    kept = dict(token)
    if not kept.get("refresh_token") and previous.get("refresh_token"):
        kept["refresh_token"] = previous["refresh_token"]  # channels that keep the refresh token send none
    account.oauth_tokens = seal_tokens(cipher, account.id, kept)
    account.token_expires_at = token_expiry(kept)
    account.updated_at = utcnow()


async def _record_failure(db: Database, account_id: uuid.UUID, error: str) -> None:
    await write_health(db, account_id, False, error)


# --- refresh -------------------------------------------------------------------------------------------------


class RefreshReport(msgspec.Struct, kw_only=True):
    refreshed: list[uuid.UUID] = msgspec.field(default_factory=list)
    retry_later: list[uuid.UUID] = msgspec.field(default_factory=list)
    paused: list[uuid.UUID] = msgspec.field(default_factory=list)


async def refresh_due(
    db: Database, keys: KeyService, plugins: PluginHost, settings: Settings, *, margin: dt.timedelta = REFRESH_MARGIN
) -> RefreshReport:
    """Refresh the tokens of the tenant's active accounts that expire within ``margin``."""
    report = RefreshReport()
    async with db.transaction() as session:
        due = list(
            (
                await session.execute(
                    select(ConnectorAccount.id).where(
                        ConnectorAccount.status == "active",
                        ConnectorAccount.oauth_tokens.is_not(None),
                        ConnectorAccount.token_expires_at <= utcnow() + margin,
                    )
                )
            ).scalars()
        )
    for account_id in due:
        outcome = await refresh_account(db, keys, plugins, settings, account_id)
        getattr(report, outcome).append(account_id)
    return report


async def refresh_account(
    db: Database, keys: KeyService, plugins: PluginHost, settings: Settings, account_id: uuid.UUID
) -> str:
    """Refresh one account's token: ``refreshed``, ``retry_later`` or ``paused`` (see the module doc)."""
    async with db.transaction() as session:
        cipher = await keys.cipher(session)
        account = await get_account(session, account_id)
        token = open_tokens(cipher, account.id, account.oauth_tokens)
        expired = account.token_expires_at is not None and account.token_expires_at <= utcnow()
        try:
            spec, hidden = client_spec(plugins, cipher, account)
        except DomainError as exc:
            spec, hidden, problem = None, [], exc.en
    refresh = str(token.get("refresh_token") or "")
    if spec is None:
        return await _refresh_failed(db, settings, account_id, problem, definitive=True)
    if not refresh:
        return await _refresh_failed(db, settings, account_id, "no refresh token", definitive=True)
    hidden = [*hidden, refresh, str(token.get("access_token") or "")]
    try:
        async with _client(spec, settings) as client:
            fresh = await asyncio.wait_for(client.refresh_token(spec.token_url, refresh_token=refresh), TOKEN_TIMEOUT)
    except OAuthError as exc:
        return await _refresh_failed(db, settings, account_id, scrub(_describe(exc), hidden), definitive=True)
    except (httpx.HTTPError, TimeoutError, ValueError) as exc:
        detail = scrub(_describe(exc), hidden)
        return await _refresh_failed(db, settings, account_id, detail, definitive=expired)
    async with db.transaction() as session:
        cipher = await keys.cipher(session)
        account = await get_account(session, account_id)
        _store_token(account, cipher, dict(fresh))
        record(session, "connector.token_refreshed", "connector_account", account.id, {})
    await write_health(db, account_id, True, "")
    log.info("connector_token_refreshed", account=str(account_id))
    return "refreshed"


async def _refresh_failed(
    db: Database, settings: Settings, account_id: uuid.UUID, detail: str, *, definitive: bool
) -> str:
    await write_health(db, account_id, False, f"token refresh failed: {detail}")
    if not definitive:
        log.warning("connector_token_refresh_retry", account=str(account_id), detail=detail)
        return "retry_later"
    async with db.transaction() as session:
        account = await get_account(session, account_id)
        if account.status != "active":
            return "paused"
        await set_paused(session, account, "token_refresh_failed")
        emit(
            session,
            "connector.token_refresh_failed",
            account.id,
            {"connector_id": account.connector_id, "name": account.name, "detail": detail},
        )
        await alert_owner(session, settings, account, detail)
    log.warning("connector_token_refresh_failed", account=str(account_id), detail=detail)
    return "paused"


async def alert_owner(session: AsyncSession, settings: Settings, account: ConnectorAccount, detail: str) -> None:
    """E-mail the tenant's owner that ``account`` was paused (template ``connector_paused``)."""
    tenant, _plan = await get_tenant(session, account.tenant_id)
    link = f"{settings.base_url.rstrip('/')}/console/connectors/accounts/{account.id}"
    enqueue(
        session,
        NOTIFY_ACTOR,
        {
            "channel": "email",
            "to": tenant.owner_email,
            "template": "connector_paused",
            "params": {
                "account_name": account.name,
                "connector_id": account.connector_id,
                "reason": detail[:200],
                "link": link,
            },
        },
        business_key=f"connector_paused:{account.id}:{utcnow().isoformat()}",
    )
