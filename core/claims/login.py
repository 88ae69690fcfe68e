"""Signing in to "my codes" (``/h5/me``) by phone and one-time code, without a claim link.

The shop is named by its slug (``/h5/me?shop=<slug>``, or the shop of the last member page the browser
opened). A code is sent only to a phone that belongs to an active member of the shop; the page says the
same thing either way ("if this phone has codes here, a code was sent"), so the form tells nobody who is a
member and sends no SMS to strangers. The same one-time code rules apply as for claim links (lock after
five wrong codes, a minute between codes, the risk lockout and blocklist), and the privacy consent is
required and recorded before the phone is used.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.claims import otp
from core.claims.access import requester
from core.claims.member_flows import commit_refusal
from core.db.base import utcnow
from core.db.session import bind_tenant
from core.errors import NotFound, TenantSuspended
from core.kernel import Kernel
from core.members.consent import record_consent, require_consent
from core.members.models import Member
from core.members.services import by_phone_digest, digest_with, mask_phone, normalize_phone
from tenants.models import Tenant


class LoginRefused(otp.OtpInvalid):
    """The confirmed phone has no active member here (it cannot happen for a code this service sent)."""


@dataclass(frozen=True)
class LoginCode:
    """What the page shows after asking for a code: the masked phone, and when a new one may be asked."""

    phone_masked: str
    resend_in: int


async def open_shop(session: AsyncSession, slug: str) -> Tenant:
    """The shop (tenant) of ``slug``, made current; ``shop_not_found`` for an unknown or malformed slug."""
    slug = (slug or "").strip().lower()[:40]
    tenant = (
        (await session.execute(select(Tenant).where(Tenant.slug == slug))).scalar_one_or_none() if slug else None
    )
    if tenant is None:
        raise NotFound("Shop not found", "店铺不存在，请通过短信或商家提供的链接打开", code="shop_not_found")
    await bind_tenant(session, tenant.id)
    if not tenant.is_active:
        raise TenantSuspended("This service is paused", "该服务已暂停")
    return tenant


def _subject(digest: str) -> str:
    return digest[:32]


async def request_login_code(
    session: AsyncSession,
    kernel: Kernel,
    tenant: Tenant,
    phone: str,
    consent: str | None,
    *,
    ip: str | None = None,
    device_id: str | None = None,
) -> LoginCode:
    """Send a sign-in code to ``phone`` when it is an active member's (refusals as for claim links: risk
    lockout or blocklist, ``otp_locked``, ``otp_too_soon``). The consent is required first, and recorded."""
    version = require_consent(consent)
    e164 = normalize_phone(phone)
    cipher = await kernel.keys.cipher(session)
    digest = digest_with(cipher, e164)
    member = await by_phone_digest(session, digest)
    if member is not None and member.status == "active":
        await otp.send_code(
            session,
            kernel,
            "login",
            _subject(digest),
            e164,
            sender=tenant.name,
            requester=requester(ip, device_id),
        )
    record_consent(
        session, cipher, e164, "login", version, member_id=member.id if member else None, ip=ip
    )
    return LoginCode(mask_phone(e164), int(otp.OTP_RESEND_AFTER.total_seconds()))


async def confirm_login_code(
    session: AsyncSession,
    kernel: Kernel,
    phone: str,
    code: str,
    *,
    ip: str | None = None,
    device_id: str | None = None,
) -> Member:
    """The member the one-time ``code`` signs in; a wrong code is counted and committed before the refusal
    (the attempt and any lock stick), as for claim links."""
    e164 = normalize_phone(phone)
    cipher = await kernel.keys.cipher(session)
    digest = digest_with(cipher, e164)
    await commit_refusal(
        session,
        otp.check_code(session, kernel, "login", _subject(digest), code, requester=requester(ip, device_id)),
    )
    member = await by_phone_digest(session, digest)
    if member is None or member.status != "active":
        raise LoginRefused("This phone cannot sign in here", "该手机号无法登录")
    return member


def resend_in(last_sent_at: dt.datetime | None) -> int:
    """Seconds until a new code may be asked for (0: now)."""
    if last_sent_at is None:
        return 0
    left = (last_sent_at + otp.OTP_RESEND_AFTER - utcnow()).total_seconds()
    return max(0, int(left + 0.999))
