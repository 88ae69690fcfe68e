"""API clients (OAuth2 client credentials) and their bearer tokens."""

from __future__ import annotations

import datetime as dt
import time
import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.session import bind_tenant
from core.errors import FieldError, Forbidden, NotFound, TenantSuspended, Unauthorized, ValidationFailed
from tenants.models import AccessToken, ApiClient, Plan, Tenant
from tenants.registry import check_quota
from tenants.schemas import ApiClientOut, Principal
from tenants.scopes import MANAGE_CLIENTS_SCOPE, unknown_scopes
from tenants.security import digest, new_client_id, random_secret, tenant_of_credential


def client_out(c: ApiClient) -> ApiClientOut:
    return ApiClientOut(c.id, c.name, c.client_id, list(c.scopes), c.created_at, c.revoked_at, c.last_used_at)


def _check_grantable(scopes: list[str], granted_by: frozenset[str]) -> None:
    """An API client may give another client only scopes it holds itself, and never ``clients:manage``."""
    if MANAGE_CLIENTS_SCOPE in scopes:
        raise Forbidden(
            f"The scope {MANAGE_CLIENTS_SCOPE!r} can only be given by an owner or admin in the console, "
            "or by the platform operator's CLI",
            f"权限范围 {MANAGE_CLIENTS_SCOPE!r} 只能由所有者或管理员在控制台、或由平台运维通过命令行授予",
            code="scope_not_grantable",
            extra={"scope": MANAGE_CLIENTS_SCOPE},
        )
    beyond = sorted(set(scopes) - granted_by)
    if beyond:
        raise Forbidden(
            f"A client cannot give scopes it does not hold itself: {', '.join(beyond)}",
            f"客户端不能授予自身未持有的权限范围：{', '.join(beyond)}",
            code="scope_exceeds_caller",
            extra={"scopes": beyond},
        )


async def create_client(
    session: AsyncSession,
    name: str,
    scopes: list[str],
    created_by: uuid.UUID | None = None,
    *,
    granted_by: frozenset[str] | None = None,
) -> tuple[ApiClient, str]:
    """Create a client; returns it with its secret, which is shown once and stored only as a digest.

    ``created_by`` is the console user who created it. ``granted_by`` is the scope set of the API client
    creating it (None for a console owner/admin or the CLI): such a client can give only scopes it holds
    and never ``clients:manage`` (see :func:`_check_grantable`). The plan's ``api_clients`` quota applies.
    """
    tenant_id = require_tenant()
    bad = unknown_scopes(scopes)
    if bad or not scopes:
        raise ValidationFailed(
            f"Unknown or missing scopes: {', '.join(bad) or '(none chosen)'}",
            f"权限范围无效或未选择：{', '.join(bad) or '（未选择）'}",
            errors=[
                FieldError(field="scopes", message="choose from the documented scopes", code="invalid_scope")
            ],
        )
    if granted_by is not None:
        _check_grantable(scopes, granted_by)
    await check_quota(session, tenant_id, "api_clients")
    secret = random_secret("kqs")
    client = ApiClient(
        name=name,
        client_id=new_client_id(tenant_id),
        secret_digest=digest(secret),
        scopes=sorted(set(scopes)),
        created_by=created_by,
    )
    session.add(client)
    await session.flush()
    record(session, "api_client.created", "api_client", client.id,
           {"name": name, "client_id": client.client_id, "scopes": client.scopes})
    return client, secret


async def list_clients(session: AsyncSession) -> list[ApiClient]:
    return list((await session.execute(select(ApiClient).order_by(ApiClient.created_at))).scalars())


async def get_client(session: AsyncSession, pk: uuid.UUID) -> ApiClient:
    client = (await session.execute(select(ApiClient).where(ApiClient.id == pk))).scalar_one_or_none()
    if client is None:
        raise NotFound("API client not found", "API 客户端不存在", code="api_client_not_found")
    return client


async def revoke_client(
    session: AsyncSession, pk: uuid.UUID, *, granted_by: frozenset[str] | None = None
) -> ApiClient:
    """Revoke a client and every token it holds; effective on the next request.

    With ``granted_by`` (an API client revoking), only a client whose scopes the caller holds all of.
    Revoking a revoked client changes nothing.
    """
    client = await get_client(session, pk)
    if granted_by is not None and not set(client.scopes) <= granted_by:
        raise Forbidden(
            "A client cannot revoke a client that holds scopes it does not hold itself",
            "客户端不能吊销持有其自身未持有权限范围的客户端",
            code="client_exceeds_caller",
            extra={"scopes": sorted(set(client.scopes) - granted_by)},
        )
    if client.revoked_at is None:
        now = utcnow()
        client.revoked_at = now
        await session.execute(
            update(AccessToken)
            .where(AccessToken.client_pk == client.id, AccessToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        record(session, "api_client.revoked", "api_client", client.id, {"client_id": client.client_id})
        await session.flush()
        forget_principals()
    return client


async def find_client_for_token(session: AsyncSession, client_id: str) -> tuple[Tenant, ApiClient] | None:
    """The tenant (bound as context) and client of a ``client_id``, or None."""
    tenant_id = tenant_of_credential(client_id, "kqc")
    if tenant_id is None:
        return None
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        return None
    await bind_tenant(session, tenant_id)
    client = (
        await session.execute(select(ApiClient).where(ApiClient.client_id == client_id))
    ).scalar_one_or_none()
    return (tenant, client) if client else None


async def store_token(
    session: AsyncSession, client: ApiClient, token: str, scopes: list[str], ttl: int
) -> AccessToken:
    row = AccessToken(
        client_pk=client.id,
        token_digest=digest(token),
        scopes=scopes,
        expires_at=utcnow() + dt.timedelta(seconds=ttl),
    )
    session.add(row)
    client.last_used_at = utcnow()
    await session.flush()
    return row


INVALID_TOKEN = ("The access token is invalid", "访问令牌无效")


# Resolved bearer tokens, kept a few seconds per process so a burst of API calls costs no database
# round trip for authentication. Revocation and suspension in this process clear it at once; in other
# processes they take effect within PRINCIPAL_CACHE_SECONDS.
PRINCIPAL_CACHE_SECONDS = 5.0
_PRINCIPAL_CACHE_MAX = 10_000
_principals: dict[str, tuple[float, dt.datetime, Principal]] = {}
_clock = time.monotonic


def forget_principals() -> None:
    """Drop every cached bearer principal (after a revocation, suspension or plan change)."""
    _principals.clear()


async def authenticate_bearer(session: AsyncSession, token: str) -> Principal:
    """Resolve a bearer token to a principal, binding its tenant; refuse expired/revoked/suspended."""
    key = digest(token)
    hit = _principals.get(key)
    if hit is not None:
        cached_until, expires_at, principal = hit
        if cached_until > _clock() and expires_at > utcnow():
            assert principal.tenant_id is not None  # cached by _resolve_bearer: a tenant's API client
            await bind_tenant(session, principal.tenant_id)
            return principal
        _principals.pop(key, None)
    principal, expires_at = await _resolve_bearer(session, token, key)
    if len(_principals) >= _PRINCIPAL_CACHE_MAX:
        _principals.clear()
    _principals[key] = (_clock() + PRINCIPAL_CACHE_SECONDS, expires_at, principal)
    return principal


async def _resolve_bearer(session: AsyncSession, token: str, key: str) -> tuple[Principal, dt.datetime]:
    tenant_id = tenant_of_credential(token, "kqat")
    if tenant_id is None:
        raise Unauthorized(*INVALID_TOKEN, code="invalid_token")
    await bind_tenant(session, tenant_id)
    row = (
        await session.execute(
            select(AccessToken, ApiClient.client_id, ApiClient.revoked_at, Tenant.status, Plan.requests_per_minute)
            .join(
                ApiClient,
                (ApiClient.tenant_id == AccessToken.tenant_id) & (ApiClient.id == AccessToken.client_pk),
            )
            .join(Tenant, Tenant.id == AccessToken.tenant_id)
            .join(Plan, Plan.id == Tenant.plan_id)
            .where(AccessToken.token_digest == key)
        )
    ).first()
    if row is None:
        raise Unauthorized(*INVALID_TOKEN, code="invalid_token")
    access, client_id, client_revoked, tenant_status, rpm = row
    if access.revoked_at is not None or client_revoked is not None:
        raise Unauthorized("The access token was revoked", "访问令牌已被吊销", code="token_revoked")
    if access.expires_at <= utcnow():
        raise Unauthorized("The access token has expired", "访问令牌已过期", code="token_expired")
    if tenant_status != "active":
        raise TenantSuspended(
            "This tenant is suspended; contact the platform operator", "该租户已被暂停，请联系平台运营方"
        )
    principal = Principal(
        kind="client",
        subject_id=client_id,
        tenant_id=tenant_id,
        scopes=frozenset(access.scopes),
        client_pk=access.client_pk,
        rate_limit=rpm,
    )
    return principal, access.expires_at
