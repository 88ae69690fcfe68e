"""Claim links: the API creates a signed, expiring link to a grant's held codes; the claim page opens it.

A link is bound on its first confirmation by a one-time SMS code: from then on only the bound phone can
open it, so a forwarded link is useless to anyone else. When the holder's phone is known up front (the
grant's member has one, or a transfer's recipient) only that phone can confirm it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.claims import otp, tokens
from core.claims.access import absolute, enter_tenant, invalid_link, requester
from core.claims.models import ClaimLink
from core.claims.schemas import (
    DEFAULT_LINK_TTL_SECONDS,
    MAX_LINK_TTL_SECONDS,
    MIN_LINK_TTL_SECONDS,
    ClaimLinkCreate,
    ClaimLinkOut,
)
from core.db.base import utcnow
from core.db.ids import new_id
from core.db.session import get_scoped
from core.errors import Conflict, DomainError, FieldError, NotFound, ValidationFailed
from core.events.services import emit
from core.grants.models import Grant, GrantItem
from core.kernel import Kernel
from core.members.consent import record_consent, require_consent
from core.members.models import Member
from core.members.services import digest_with, find_or_create_member, member_phone, normalize_phone
from core.settings import Settings
from tenants.models import Tenant


class LinkExpired(DomainError):
    status, code = 410, "link_expired"


class LinkTaken(DomainError):
    status, code = 409, "link_taken"


# ---------------------------------------------------------------- API side


def link_out(settings: Settings, link: ClaimLink, token: str) -> ClaimLinkOut:
    """The link as the API answers it, with its signed page URL."""
    path = f"/h5/c/{token}"
    return ClaimLinkOut(
        id=link.id,
        grant_id=link.grant_id,
        url=absolute(settings, path),
        path=path,
        expires_at=link.expires_at,
        status=link.status,
        phone_masked=link.phone_masked,
    )


async def create_claim_link(
    session: AsyncSession,
    kernel: Kernel,
    grant_id: uuid.UUID,
    data: ClaimLinkCreate,
    *,
    client_id: uuid.UUID | None = None,
) -> ClaimLinkOut:
    """A signed link to the grant's held items. When the holder's phone is known (the grant's member has
    one, or an earlier link was bound) only that phone can confirm it."""
    ttl = data.expires_in_seconds if data.expires_in_seconds is not None else DEFAULT_LINK_TTL_SECONDS
    if not MIN_LINK_TTL_SECONDS <= ttl <= MAX_LINK_TTL_SECONDS:
        raise ValidationFailed(
            "expires_in_seconds is out of range",
            "有效期超出范围",
            errors=[
                FieldError(
                    field="expires_in_seconds",
                    message=f"between {MIN_LINK_TTL_SECONDS} and {MAX_LINK_TTL_SECONDS}",
                    code="out_of_range",
                )
            ],
        )
    grant = (await session.execute(select(Grant).where(Grant.id == grant_id))).scalar_one_or_none()
    if grant is None:
        raise NotFound("Grant not found", "发放记录不存在", code="grant_not_found")
    if grant.status == "voided":
        raise Conflict("The grant is voided", "该发放已作废", code="grant_voided")
    held = (
        await session.execute(
            select(func.count())
            .select_from(GrantItem)
            .where(GrantItem.grant_id == grant.id, GrantItem.status == "held")
        )
    ).scalar_one()
    if not held:
        raise Conflict("The grant has no held codes", "该发放没有可领取的券码", code="nothing_to_claim")
    member = await get_scoped(session, Member, grant.member_id) if grant.member_id else None
    link = ClaimLink(
        id=new_id(),
        grant_id=grant.id,
        source="api",
        status="open",
        client_id=client_id,
        expires_at=utcnow() + dt.timedelta(seconds=ttl),
    )
    if member is not None and member.phone_digest:
        link.member_id, link.phone_digest, link.phone_masked = (
            member.id,
            member.phone_digest,
            member.phone_masked,
        )
    session.add(link)
    await session.flush()
    cipher = await kernel.keys.cipher(session)
    token = tokens.sign(cipher, "claim_link", link.id, link.expires_at)
    record(
        session,
        "claim_link.created",
        "claim_link",
        link.id,
        {"grant_id": str(grant.id), "expires_at": link.expires_at.isoformat(), "phone": link.phone_masked},
    )
    return link_out(kernel.settings, link, token)


# ---------------------------------------------------------------- page side


@dataclass
class LinkState:
    """What the claim page needs to decide what to show."""

    tenant: Tenant
    link: ClaimLink
    token: str
    locked_until: dt.datetime | None
    code_sent_to: str | None  # masked phone of a live code, if one was sent
    resend_in: int = 0  # seconds until another code may be asked for

    @property
    def bound(self) -> bool:
        return self.link.status == "bound"

    @property
    def needs_phone(self) -> bool:
        """The visitor must type a phone (nobody is known yet); otherwise the code goes to the known one."""
        return self.link.phone_digest is None


async def open_link(session: AsyncSession, kernel: Kernel, token: str, *, lock: bool = False) -> LinkState:
    """The link behind ``token``; ``invalid_link`` when forged or unknown, ``link_expired`` when expired."""
    entry = await enter_tenant(session, kernel, token, "claim_link")
    q = select(ClaimLink).where(ClaimLink.id == entry.claims.object_id)
    if lock:
        q = q.with_for_update()
    link = (await session.execute(q)).scalar_one_or_none()
    if link is None:
        raise invalid_link()
    now = utcnow()
    if entry.claims.expired(now) or now >= link.expires_at:
        raise LinkExpired("This link has expired", "链接已过期")
    if link.opened_at is None:  # the campaign funnel's "opened": once per link, one UPDATE at commit
        link.opened_at = now
    challenge = await otp.get_challenge(session, "link", str(link.id))
    pending = None
    if challenge and challenge.code_digest and challenge.expires_at and now < challenge.expires_at:
        pending = otp.masked_phone_of(entry.cipher, challenge)
    wait = otp.resend_wait(challenge, now) if pending else 0
    return LinkState(entry.tenant, link, token, otp.locked_until(challenge, now), pending, wait)


async def request_link_code(
    session: AsyncSession,
    kernel: Kernel,
    state: LinkState,
    phone: str | None,
    *,
    consent: str | None = None,
    ip: str | None = None,
    device_id: str | None = None,
) -> otp.SentCode:
    """Send a one-time code for the link: to its known phone, or to ``phone`` when nobody is known yet.

    The privacy consent is required first (``consent_required``) and recorded with the send.
    ``risk_refused`` while the requester's IP or device is locked out after too many wrong codes, or when
    the phone, device or IP is blocklisted (no SMS is sent).
    """
    version = require_consent(consent)
    link = state.link
    if link.phone_digest is not None:
        member = await get_scoped(session, Member, link.member_id) if link.member_id else None
        e164 = await member_phone(session, kernel, member) if member is not None else None
        if e164 is None or member is None or member.phone_digest != link.phone_digest:
            raise LinkTaken("This link belongs to another phone", "该链接已绑定其他手机号")
    else:
        e164 = normalize_phone(phone or "")
    sent = await otp.send_code(
        session,
        kernel,
        "link",
        str(link.id),
        e164,
        sender=state.tenant.name,
        requester=requester(ip, device_id),
    )
    cipher = await kernel.keys.cipher(session)
    record_consent(session, cipher, e164, "claim", version, member_id=link.member_id, ip=ip)
    return sent


async def _holder_for_phone(session: AsyncSession, kernel: Kernel, grant: Grant, phone: str) -> Member:
    """The member who becomes the holder: the grant's member gets the phone when it has none and the phone
    is free; otherwise the member with that phone (created if new)."""
    current = await get_scoped(session, Member, grant.member_id) if grant.member_id else None
    if current is not None and current.external_id and current.phone_digest is None:
        try:
            return await find_or_create_member(
                session, kernel, external_id=current.external_id, phone=phone, source="claim"
            )
        except Conflict:
            pass  # the phone belongs to another member: that member becomes the holder
    return await find_or_create_member(session, kernel, phone=phone, source="claim")


async def confirm_link(
    session: AsyncSession,
    kernel: Kernel,
    state: LinkState,
    code: str,
    *,
    ip: str | None = None,
    device_id: str | None = None,
) -> Member:
    """Check the one-time code; on the first success bind the link (and its items) to the phone's member.

    Returns the member whose session may now open the link. A wrong code is counted (commit even on error),
    also as a failed ``claim`` of the IP and device (risk lockout, ``risk_refused``).
    """
    link = state.link
    phone = await otp.check_code(
        session, kernel, "link", str(link.id), code, requester=requester(ip, device_id)
    )
    cipher = await kernel.keys.cipher(session)
    digest = digest_with(cipher, phone)
    if link.phone_digest is not None and digest != link.phone_digest:
        raise LinkTaken("This link belongs to another phone", "该链接已绑定其他手机号")
    if link.status == "bound":
        return await _reopen(session, link)
    grant = (await session.execute(select(Grant).where(Grant.id == link.grant_id))).scalar_one()
    member = await _new_holder(session, kernel, link, grant, phone)
    items = await _items_to_bind(session, link, grant)
    for item in items:
        item.member_id = member.id
    link.member_id, link.phone_digest, link.phone_masked = member.id, member.phone_digest, member.phone_masked
    link.status, link.bound_at = "bound", utcnow()
    if link.item_id is None:
        await _bind_sibling_links(session, link, grant, member)
    await session.flush()
    facts = {
        "link_id": str(link.id),
        "grant_id": str(grant.id),
        "member_id": str(member.id),
        "items": [str(i.id) for i in items],
        "source": link.source,
    }
    record(session, "claim_link.bound", "claim_link", link.id, {**facts, "phone": member.phone_masked})
    emit(session, "code.claimed", grant.id, facts)
    return member


async def _reopen(session: AsyncSession, link: ClaimLink) -> Member:
    """The holder of an already bound link, confirmed again by its phone (audited as an opening)."""
    member = await get_scoped(session, Member, link.member_id) if link.member_id else None
    if member is None or member.status != "active":
        raise LinkTaken("This link is no longer available", "该链接已不可用")
    record(session, "claim_link.opened", "claim_link", link.id, {"member_id": str(member.id)})
    return member


async def _new_holder(
    session: AsyncSession, kernel: Kernel, link: ClaimLink, grant: Grant, phone: str
) -> Member:
    """Who the first confirmation binds the link to: its known member, else the confirmed phone's."""
    if link.member_id is not None:
        member = await get_scoped(session, Member, link.member_id)
        assert member is not None
    else:
        member = await _holder_for_phone(session, kernel, grant, phone)
    if member.status != "active":
        raise Conflict("This member is blocked", "该会员已被停用", code="member_blocked")
    return member


async def _items_to_bind(session: AsyncSession, link: ClaimLink, grant: Grant) -> list[GrantItem]:
    """The link's one item (a transfer), or the grant's units its member still holds."""
    if link.item_id is not None:
        return list((await session.execute(select(GrantItem).where(GrantItem.id == link.item_id))).scalars())
    return list(
        (
            await session.execute(
                select(GrantItem).where(
                    GrantItem.grant_id == grant.id,
                    GrantItem.status == "held",
                    GrantItem.member_id == grant.member_id,
                )
            )
        ).scalars()
    )


async def _bind_sibling_links(session: AsyncSession, link: ClaimLink, grant: Grant, member: Member) -> None:
    """The grant's other open links that nobody confirmed yet now need the same phone."""
    others = (
        await session.execute(
            select(ClaimLink).where(
                ClaimLink.grant_id == grant.id,
                ClaimLink.id != link.id,
                ClaimLink.status == "open",
                ClaimLink.phone_digest.is_(None),
            )
        )
    ).scalars()
    for other in others:
        other.member_id, other.phone_digest, other.phone_masked = (
            member.id,
            member.phone_digest,
            member.phone_masked,
        )
