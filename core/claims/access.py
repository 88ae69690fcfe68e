"""Getting into a member page: a signed page token selects its tenant, a session cookie its member.

Every member-facing service (claim links, the holder's codes, transfer, campaign pages) starts here: the
token names its tenant (which selects the key that verifies it), and a bad token of any kind is the same
``invalid_link`` to the visitor. The member session is a signed cookie of its own kind.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from core.claims import tokens
from core.crypto.envelope import TenantCipher
from core.db.base import utcnow
from core.db.session import bind_tenant, get_scoped
from core.errors import DomainError, TenantSuspended
from core.kernel import Kernel
from core.members.models import Member
from core.risk.gate import RiskSubject
from core.settings import Settings
from tenants.models import Tenant

MEMBER_SESSION_TTL = dt.timedelta(hours=2)
MEMBER_COOKIE = "kq_member"


class InvalidLink(DomainError):
    status, code = 400, "invalid_link"


class SessionRequired(DomainError):
    status, code = 401, "member_login_required"


def invalid_link() -> InvalidLink:
    """The one refusal a visitor sees for a forged, foreign or unknown page token."""
    return InvalidLink("This link is not valid", "链接无效或已被篡改")


# ---------------------------------------------------------------- tenant from a signed token


@dataclass(frozen=True)
class TenantEntry:
    tenant: Tenant
    cipher: TenantCipher
    claims: tokens.TokenClaims


async def enter_tenant(
    session: AsyncSession, kernel: Kernel, token: str, kind: tokens.TokenKind
) -> TenantEntry:
    """Verify a page token and make its tenant the current one; ``invalid_link`` for any bad token."""
    try:
        tenant_id = tokens.peek_tenant(token, kind)
    except tokens.BadToken:
        raise invalid_link() from None
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise invalid_link()
    await bind_tenant(session, tenant_id)
    try:
        cipher = await kernel.keys.cipher(session)
        claims = tokens.verify(cipher, token, kind)
    except (tokens.BadToken, LookupError):
        raise invalid_link() from None
    if not tenant.is_active:
        raise TenantSuspended("This service is paused", "该服务已暂停")
    return TenantEntry(tenant, cipher, claims)


def requester(ip: str | None, device_id: str | None) -> RiskSubject | None:
    """Who asks for or enters a one-time code, for the risk engine's failure velocity (None: unknown)."""
    return RiskSubject(ip=ip, device_id=device_id) if ip or device_id else None


def absolute(settings: Settings, path: str) -> str:
    """``path`` under the configured public base URL."""
    return settings.base_url.rstrip("/") + path


# ---------------------------------------------------------------- member session cookie


def session_cookie(cipher: TenantCipher, member_id: uuid.UUID) -> tuple[str, int]:
    """(cookie value, max-age seconds) of a member session."""
    ttl = int(MEMBER_SESSION_TTL.total_seconds())
    return tokens.sign(cipher, "member_session", member_id, utcnow() + MEMBER_SESSION_TTL), ttl


async def session_member(
    session: AsyncSession, kernel: Kernel, cookie: str | None, *, tenant_id: uuid.UUID | None = None
) -> tuple[Tenant, Member] | None:
    """The member of a valid session cookie (its tenant becomes current), or None.

    With ``tenant_id``, a cookie of another tenant is ignored (and the current tenant left as it is).
    """
    if not cookie:
        return None
    try:
        if tenant_id is not None and tokens.peek_tenant(cookie, "member_session") != tenant_id:
            return None
    except tokens.BadToken:
        return None
    try:
        entry = await enter_tenant(session, kernel, cookie, "member_session")
    except DomainError:
        return None
    if entry.claims.expired(utcnow()):
        return None
    member = await get_scoped(session, Member, entry.claims.object_id)
    if member is None or member.status != "active":
        return None
    return entry.tenant, member
