"""Claim links, the member's codes, transfer (转赠) and campaign claims.

The member-facing pages (``h5``) and the API call these services; nothing here knows about HTTP except
the errors. A claim link is bound on its first confirmation by a one-time SMS code: from then on only the
bound phone can open it, so a forwarded link is useless to anyone else. The codes themselves stay in the
vault and are unsealed only for the holder's page.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from sqlalchemy import and_, distinct, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.catalog.models import Product
from core.claims import otp, tokens
from core.claims.models import Campaign, CampaignClaim, ClaimLink
from core.claims.qr import qr_svg
from core.claims.schemas import (
    DEFAULT_LINK_TTL_SECONDS,
    MAX_CLAIM_QUANTITY,
    MAX_LINK_TTL_SECONDS,
    MAX_PER_MEMBER_LIMIT,
    MIN_LINK_TTL_SECONDS,
    CampaignCreate,
    CampaignOut,
    CampaignPage,
    CampaignUpdate,
    ClaimLinkCreate,
    ClaimLinkOut,
)
from core.crypto.envelope import TenantCipher
from core.db.base import utcnow
from core.db.ids import new_id, readable_ref
from core.db.session import bind_tenant, get_scoped
from core.errors import Conflict, DomainError, FieldError, NotFound, TenantSuspended, ValidationFailed
from core.events.services import emit
from core.grants.lifecycle import item_transition
from core.grants.models import Grant, GrantItem
from core.grants.schemas import GrantRequest
from core.grants.services import create_grant
from core.inventory.models import Code
from core.inventory.vault import masked as masked_code
from core.inventory.vault import unseal
from core.kernel import Kernel
from core.members.models import Member
from core.members.services import (
    digest_with,
    find_or_create_member,
    mask_phone,
    member_phone,
    normalize_phone,
)
from core.risk.gate import RiskRefused, RiskSubject, guard
from core.settings import Settings
from tenants.models import Tenant

MEMBER_SESSION_TTL = dt.timedelta(hours=2)
MEMBER_COOKIE = "kq_member"
MAX_PAGE = 200
_REDEEMED_CODE_STATES = ("redeemed", "expired", "voided")


class InvalidLink(DomainError):
    status, code = 400, "invalid_link"


class LinkExpired(DomainError):
    status, code = 410, "link_expired"


class LinkTaken(DomainError):
    status, code = 409, "link_taken"


class NotTransferable(DomainError):
    status, code = 409, "not_transferable"


class CampaignClosed(DomainError):
    status, code = 409, "campaign_not_active"


class SessionRequired(DomainError):
    status, code = 401, "member_login_required"


def _invalid_link() -> InvalidLink:
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
        raise _invalid_link() from None
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise _invalid_link()
    await bind_tenant(session, tenant_id)
    try:
        cipher = await kernel.keys.cipher(session)
        claims = tokens.verify(cipher, token, kind)
    except (tokens.BadToken, LookupError):
        raise _invalid_link() from None
    if not tenant.is_active:
        raise TenantSuspended("This service is paused", "该服务已暂停")
    return TenantEntry(tenant, cipher, claims)


def _requester(ip: str | None, device_id: str | None) -> RiskSubject | None:
    """Who asks for or enters a one-time code, for the risk engine's failure velocity (None: unknown)."""
    return RiskSubject(ip=ip, device_id=device_id) if ip or device_id else None


def absolute(settings: Settings, path: str) -> str:
    return settings.base_url.rstrip("/") + path


# ---------------------------------------------------------------- claim links (API side)


def _link_out(settings: Settings, link: ClaimLink, token: str) -> ClaimLinkOut:
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
    return _link_out(kernel.settings, link, token)


# ---------------------------------------------------------------- claim links (page side)


@dataclass
class LinkState:
    """What the claim page needs to decide what to show."""

    tenant: Tenant
    link: ClaimLink
    token: str
    locked_until: dt.datetime | None
    code_sent_to: str | None  # masked phone of a live code, if one was sent

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
        raise _invalid_link()
    now = utcnow()
    if entry.claims.expired(now) or now >= link.expires_at:
        raise LinkExpired("This link has expired", "链接已过期")
    challenge = await otp.get_challenge(session, "link", str(link.id))
    pending = None
    if challenge and challenge.code_digest and challenge.expires_at and now < challenge.expires_at:
        pending = otp.masked_phone_of(entry.cipher, challenge)
    return LinkState(entry.tenant, link, token, otp.locked_until(challenge, now), pending)


async def request_link_code(
    session: AsyncSession,
    kernel: Kernel,
    state: LinkState,
    phone: str | None,
    *,
    ip: str | None = None,
    device_id: str | None = None,
) -> otp.SentCode:
    """Send a one-time code for the link: to its known phone, or to ``phone`` when nobody is known yet.

    ``risk_refused`` while the requester's IP or device is locked out after too many wrong codes.
    """
    link = state.link
    if link.phone_digest is not None:
        member = await get_scoped(session, Member, link.member_id) if link.member_id else None
        e164 = await member_phone(session, kernel, member) if member is not None else None
        if e164 is None or member is None or member.phone_digest != link.phone_digest:
            raise LinkTaken("This link belongs to another phone", "该链接已绑定其他手机号")
    else:
        e164 = normalize_phone(phone or "")
    return await otp.send_code(
        session,
        kernel,
        "link",
        str(link.id),
        e164,
        sender=state.tenant.name,
        requester=_requester(ip, device_id),
    )


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
        session, kernel, "link", str(link.id), code, requester=_requester(ip, device_id)
    )
    cipher = await kernel.keys.cipher(session)
    digest = digest_with(cipher, phone)
    if link.phone_digest is not None and digest != link.phone_digest:
        raise LinkTaken("This link belongs to another phone", "该链接已绑定其他手机号")
    if link.status == "bound":
        member = await get_scoped(session, Member, link.member_id) if link.member_id else None
        if member is None or member.status != "active":
            raise LinkTaken("This link is no longer available", "该链接已不可用")
        record(session, "claim_link.opened", "claim_link", link.id, {"member_id": str(member.id)})
        return member
    grant = (await session.execute(select(Grant).where(Grant.id == link.grant_id))).scalar_one()
    if link.member_id is not None:
        member = await get_scoped(session, Member, link.member_id)
        assert member is not None
    else:
        member = await _holder_for_phone(session, kernel, grant, phone)
    if member.status != "active":
        raise Conflict("This member is blocked", "该会员已被停用", code="member_blocked")
    if link.item_id is not None:
        items = list((await session.execute(select(GrantItem).where(GrantItem.id == link.item_id))).scalars())
    else:
        items = list(
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
    for item in items:
        item.member_id = member.id
    now = utcnow()
    link.member_id, link.phone_digest, link.phone_masked = member.id, member.phone_digest, member.phone_masked
    link.status, link.bound_at = "bound", now
    if link.item_id is None:
        # other unbound links of this grant now need the same phone
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


# ---------------------------------------------------------------- what the holder sees


@dataclass
class ItemView:
    """One unit on a member page; ``number``/``pin``/``qr`` only for a held, unexpired unit."""

    id: uuid.UUID
    product_name: str
    status: str  # held | redeemed | transferred | expired | voided
    masked: str
    expires_on: str | None
    usage_rules: str
    face_value: int
    currency: str
    number: str | None = None
    pin: str | None = None
    qr: str | None = None
    transferable: bool = False
    transferred_to: str | None = None


def _expires_on(value: dt.datetime | None, tz: str) -> str | None:
    if value is None:
        return None
    try:
        zone = zoneinfo.ZoneInfo(tz)
    except zoneinfo.ZoneInfoNotFoundError:
        zone = zoneinfo.ZoneInfo("Asia/Shanghai")
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _effective_status(item: GrantItem, code: Code, now: dt.datetime) -> str:
    if item.status == "held" and code.state == "redeemed":
        return "redeemed"
    if item.status == "held" and (
        (item.expires_at is not None and now >= item.expires_at) or code.state in ("expired", "voided")
    ):
        return "expired"
    return item.status


async def item_views(
    session: AsyncSession, kernel: Kernel, items: list[GrantItem], tenant: Tenant, *, reveal: bool
) -> list[ItemView]:
    """Views of ``items``; with ``reveal`` the held ones are unsealed (audited) with their QR code."""
    if not items:
        return []
    codes = {
        c.id: c
        for c in (
            await session.execute(select(Code).where(Code.id.in_({i.code_id for i in items})))
        ).scalars()
    }
    products = {
        p.id: p
        for p in (
            await session.execute(
                select(Product).where(Product.id.in_({c.product_id for c in codes.values()}))
            )
        ).scalars()
    }
    successors = {i.transferred_to_id for i in items if i.transferred_to_id}
    recipients: dict[uuid.UUID, str | None] = {}
    if successors:
        rows = await session.execute(
            select(GrantItem.id, Member.phone_masked)
            .join(Member, (Member.tenant_id == GrantItem.tenant_id) & (Member.id == GrantItem.member_id))
            .where(GrantItem.id.in_(successors))
        )
        recipients = {row[0]: row[1] for row in rows}
    cipher = await kernel.keys.cipher(session) if reveal else None
    now = utcnow()
    views: list[ItemView] = []
    shown: list[str] = []
    for item in items:
        code, product = codes[item.code_id], products[codes[item.code_id].product_id]
        status = _effective_status(item, code, now)
        view = ItemView(
            id=item.id,
            product_name=product.name_zh or product.name_en,
            status=status,
            masked=masked_code(code.last4),
            expires_on=_expires_on(item.expires_at, tenant.timezone),
            usage_rules=product.usage_rules or "",
            face_value=product.face_value,
            currency=product.currency,
            transferable=status == "held",
            transferred_to=recipients.get(item.transferred_to_id) if item.transferred_to_id else None,
        )
        if cipher is not None and status == "held":
            view.number, view.pin = unseal(cipher, code.digest, code.secret)
            view.qr = qr_svg(view.number, label=f"{view.product_name} {view.masked}")
            item.revealed_at = item.revealed_at or utcnow()
            shown.append(str(item.id))
        views.append(view)
    if shown:
        record(session, "claim.codes_shown", "member", items[0].member_id, {"items": shown})
    return views


async def link_items(session: AsyncSession, link: ClaimLink) -> list[GrantItem]:
    """The units a bound link shows its holder: the transferred one, or the holder's units of the grant
    (including those given away, so the page can say so)."""
    if link.member_id is None:
        return []
    q = select(GrantItem).order_by(GrantItem.id)
    if link.item_id is not None:
        q = q.where(GrantItem.id == link.item_id)
    else:
        q = q.where(GrantItem.grant_id == link.grant_id)
    rows = (await session.execute(q)).scalars()
    return [i for i in rows if i.member_id == link.member_id]


async def member_items(session: AsyncSession, member_id: uuid.UUID) -> list[GrantItem]:
    """The "my codes" list: units the member holds or has redeemed (transferred-away units are hidden)."""
    rows = (
        await session.execute(
            select(GrantItem).where(
                GrantItem.member_id == member_id, GrantItem.status.in_(("held", "redeemed"))
            )
        )
    ).scalars()
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    return sorted(rows, key=lambda i: (i.status != "held", i.expires_at or far, i.id))


async def member_item(
    session: AsyncSession, member_id: uuid.UUID, item_id: uuid.UUID, *, lock: bool = False
) -> GrantItem:
    q = select(GrantItem).where(GrantItem.id == item_id, GrantItem.member_id == member_id)
    if lock:
        q = q.with_for_update()
    item = (await session.execute(q)).scalar_one_or_none()
    if item is None:
        raise NotFound("Code not found", "券码不存在", code="item_not_found")
    return item


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


# ---------------------------------------------------------------- transfer (转赠)


@dataclass(frozen=True)
class Transfer:
    old_item: GrantItem
    new_item: GrantItem
    link: ClaimLinkOut


async def transfer_item(
    session: AsyncSession,
    kernel: Kernel,
    tenant: Tenant,
    giver: Member,
    item_id: uuid.UUID,
    phone: str,
    *,
    ip: str | None = None,
    device_id: str | None = None,
) -> Transfer:
    """Give a held, unredeemed, unexpired unit to another phone: the unit is marked ``transferred``, a new
    unit is held by the recipient, and a claim link bound to the recipient's phone is sent by SMS."""
    item = await member_item(session, giver.id, item_id, lock=True)
    code = (await session.execute(select(Code).where(Code.id == item.code_id))).scalar_one()
    now = utcnow()
    status = _effective_status(item, code, now)
    if status != "held":
        raise NotTransferable(
            "Only an unused, unexpired code can be transferred",
            "只有未使用且未过期的券码可以转赠",
            extra={"status": status},
        )
    e164 = normalize_phone(phone)
    cipher = await kernel.keys.cipher(session)
    if digest_with(cipher, e164) == giver.phone_digest:
        raise ValidationFailed(
            "You cannot transfer a code to yourself",
            "不能转赠给自己",
            code="transfer_to_self",
            errors=[FieldError(field="phone", message="your own phone", code="self")],
        )
    subject = RiskSubject(member_id=giver.id, phone_digest=giver.phone_digest, ip=ip, device_id=device_id)
    async with guard(session, kernel.settings, "transfer", subject, 1):
        recipient = await find_or_create_member(session, kernel, phone=e164, source="claim")
        if recipient.status != "active":
            raise Conflict(
                "The recipient cannot receive codes", "对方账号暂不能接收券码", code="member_blocked"
            )
        new_item = GrantItem(
            id=new_id(),
            grant_id=item.grant_id,
            code_id=item.code_id,
            member_id=recipient.id,
            status="held",
            expires_at=item.expires_at,
        )
        item.status, item.transferred_to_id = item_transition(item.status, "transfer"), new_item.id
        link = ClaimLink(
            id=new_id(),
            grant_id=item.grant_id,
            item_id=new_item.id,
            member_id=recipient.id,
            phone_digest=recipient.phone_digest,
            phone_masked=recipient.phone_masked,
            source="transfer",
            status="open",
            expires_at=now + dt.timedelta(seconds=DEFAULT_LINK_TTL_SECONDS),
        )
        session.add(new_item)
        await session.flush()
        session.add(link)
        await session.flush()
    token = tokens.sign(cipher, "claim_link", link.id, link.expires_at)
    out = _link_out(kernel.settings, link, token)
    product = (await session.execute(select(Product).where(Product.id == code.product_id))).scalar_one()
    days = DEFAULT_LINK_TTL_SECONDS // 86_400
    body = (
        f"【{tenant.name}】{giver.phone_masked or '好友'} 转赠给您一张「{product.name_zh}」，"
        f"请在 {days} 天内打开链接领取：{out.url}"
    )
    otp.queue_sms(
        session,
        cipher,
        e164,
        body,
        template="claim_transfer",
        business_key=f"{otp.SMS_ACTOR}:transfer:{link.id}",
    )
    facts = {
        "item_id": str(item.id),
        "new_item_id": str(new_item.id),
        "grant_id": str(item.grant_id),
        "code_id": str(item.code_id),
        "product_id": str(product.id),
        "from_member_id": str(giver.id),
        "to_member_id": str(recipient.id),
        "link_id": str(link.id),
    }
    record(session, "code.transferred", "grant_item", item.id, {**facts, "to_phone": recipient.phone_masked})
    emit(session, "code.transferred", item.id, facts)
    return Transfer(item, new_item, out)


# ---------------------------------------------------------------- campaigns


@dataclass(frozen=True)
class CampaignCounts:
    """What a campaign has handed out so far (see :func:`campaign_counts`)."""

    claims: int = 0
    members: int = 0
    codes: int = 0


_NO_COUNTS = CampaignCounts()
_EDITABLE = ("name", "quantity", "per_member_limit", "starts_at", "ends_at", "active")


def _campaign_out(
    settings: Settings, cipher: TenantCipher, c: Campaign, counts: CampaignCounts = _NO_COUNTS
) -> CampaignOut:
    path = f"/h5/campaign/{tokens.sign(cipher, 'campaign', c.id)}"
    return CampaignOut(
        id=c.id,
        ref=c.ref,
        name=c.name,
        product_id=c.product_id,
        quantity=c.quantity,
        per_member_limit=c.per_member_limit,
        starts_at=c.starts_at,
        ends_at=c.ends_at,
        active=c.active,
        state=campaign_state(c),
        stopped_at=c.stopped_at,
        claim_count=counts.claims,
        member_count=counts.members,
        code_count=counts.codes,
        url=absolute(settings, path),
        path=path,
        created_at=c.created_at,
    )


async def campaign_counts(
    session: AsyncSession, campaign_ids: list[uuid.UUID]
) -> dict[uuid.UUID, CampaignCounts]:
    """Claims, distinct members and codes handed out per campaign, in one grouped query.

    A claim is one grant; its codes count while not voided, a transferred code once (only the unit it
    was last transferred to has no successor). Campaigns without claims are absent from the answer.
    """
    if not campaign_ids:
        return {}
    rows = await session.execute(
        select(
            CampaignClaim.campaign_id,
            func.count(distinct(CampaignClaim.id)),
            func.count(distinct(CampaignClaim.member_id)),
            func.count(GrantItem.id),
        )
        .select_from(CampaignClaim)
        .outerjoin(
            GrantItem,
            and_(
                GrantItem.tenant_id == CampaignClaim.tenant_id,
                GrantItem.grant_id == CampaignClaim.grant_id,
                GrantItem.transferred_to_id.is_(None),
                GrantItem.status != "voided",
            ),
        )
        .where(CampaignClaim.campaign_id.in_(campaign_ids), CampaignClaim.grant_id.is_not(None))
        .group_by(CampaignClaim.campaign_id)
    )
    return {cid: CampaignCounts(int(n), int(m), int(k)) for cid, n, m, k in rows.all()}


async def _out_with_counts(session: AsyncSession, kernel: Kernel, campaign: Campaign) -> CampaignOut:
    counts = (await campaign_counts(session, [campaign.id])).get(campaign.id, _NO_COUNTS)
    return _campaign_out(kernel.settings, await kernel.keys.cipher(session), campaign, counts)


def _range_error(field_name: str, low: int, high: int) -> ValidationFailed:
    return ValidationFailed(
        f"{field_name} is out of range",
        f"{field_name} 超出范围",
        errors=[FieldError(field=field_name, message=f"between {low} and {high}", code="out_of_range")],
    )


def _checked_fields(
    name: str,
    quantity: int,
    per_member_limit: int,
    starts_at: dt.datetime | None,
    ends_at: dt.datetime | None,
) -> str:
    """The trimmed name, once the campaign's fields pass the rules (create and edit alike)."""
    name = name.strip()
    if not name:
        raise ValidationFailed(
            "The name is required",
            "请填写活动名称",
            errors=[FieldError(field="name", message="required", code="required")],
        )
    if len(name) > 200:
        raise ValidationFailed(
            "The name is too long",
            "活动名称过长",
            errors=[FieldError(field="name", message="at most 200 characters", code="too_long")],
        )
    if not 1 <= quantity <= MAX_CLAIM_QUANTITY:
        raise _range_error("quantity", 1, MAX_CLAIM_QUANTITY)
    if not 1 <= per_member_limit <= MAX_PER_MEMBER_LIMIT:
        raise _range_error("per_member_limit", 1, MAX_PER_MEMBER_LIMIT)
    for label, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed(
                "Times need a timezone",
                "时间需带时区",
                errors=[FieldError(field=label, message="timezone required", code="naive")],
            )
    if starts_at and ends_at and ends_at <= starts_at:
        raise ValidationFailed(
            "The campaign ends before it starts",
            "活动结束时间早于开始时间",
            errors=[FieldError(field="ends_at", message="after starts_at", code="invalid")],
        )
    return name


async def create_campaign(session: AsyncSession, kernel: Kernel, data: CampaignCreate) -> CampaignOut:
    """A campaign page for a product; 404 ``product_not_found`` for another tenant's or unknown product."""
    name = _checked_fields(data.name, data.quantity, data.per_member_limit, data.starts_at, data.ends_at)
    product = (
        await session.execute(select(Product).where(Product.id == data.product_id))
    ).scalar_one_or_none()
    if product is None:
        raise NotFound(
            "Product not found",
            "商品不存在",
            code="product_not_found",
            errors=[FieldError(field="product_id", message="unknown product", code="not_found")],
        )
    campaign = Campaign(
        id=new_id(),
        ref=readable_ref("C"),
        name=name,
        product_id=product.id,
        quantity=data.quantity,
        per_member_limit=data.per_member_limit,
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        active=data.active,
    )
    session.add(campaign)
    await session.flush()
    record(
        session,
        "campaign.created",
        "campaign",
        campaign.id,
        msgspec.to_builtins(
            {
                "ref": campaign.ref,
                "name": name,
                "product_id": product.id,
                "quantity": data.quantity,
                "per_member_limit": data.per_member_limit,
                "starts_at": data.starts_at,
                "ends_at": data.ends_at,
                "active": data.active,
            }
        ),
    )
    return _campaign_out(kernel.settings, await kernel.keys.cipher(session), campaign)


async def get_campaign(
    session: AsyncSession, campaign_id: uuid.UUID, *, lock: Literal["update", "share"] | None = None
) -> Campaign:
    """The campaign; ``404 campaign_not_found`` when unknown or another tenant's."""
    q = select(Campaign).where(Campaign.id == campaign_id)
    if lock is not None:
        q = q.with_for_update(read=lock == "share")
    c = (await session.execute(q)).scalar_one_or_none()
    if c is None:
        raise NotFound("Campaign not found", "活动不存在", code="campaign_not_found")
    return c


async def campaign_out(session: AsyncSession, kernel: Kernel, campaign_id: uuid.UUID) -> CampaignOut:
    """One campaign with its claim counts."""
    return await _out_with_counts(session, kernel, await get_campaign(session, campaign_id))


async def list_campaigns(
    session: AsyncSession, kernel: Kernel, cursor: uuid.UUID | None, limit: int
) -> CampaignPage:
    """Newest first, with claim counts (one grouped query per page); ``next_cursor`` continues after the
    last one."""
    limit = max(1, min(limit, MAX_PAGE))
    q = select(Campaign).order_by(Campaign.id.desc()).limit(limit + 1)
    if cursor is not None:
        q = q.where(Campaign.id < cursor)
    rows = list((await session.execute(q)).scalars())
    page = rows[:limit]
    counts = await campaign_counts(session, [c.id for c in page])
    cipher = await kernel.keys.cipher(session)
    items = [_campaign_out(kernel.settings, cipher, c, counts.get(c.id, _NO_COUNTS)) for c in page]
    return CampaignPage(items, items[-1].id if len(rows) > limit else None)


async def update_campaign(
    session: AsyncSession, kernel: Kernel, campaign_id: uuid.UUID, data: CampaignUpdate
) -> CampaignOut:
    """Change the fields sent, under the create rules; audit ``campaign.updated`` with what changed.

    A stopped campaign stays stopped whatever its new window or ``active`` flag (only resuming reopens it).
    """
    campaign = await get_campaign(session, campaign_id, lock="update")
    sent = {f: getattr(data, f) for f in _EDITABLE if getattr(data, f) is not msgspec.UNSET}
    merged: dict[str, Any] = {f: getattr(campaign, f) for f in _EDITABLE} | sent
    merged["name"] = _checked_fields(
        merged["name"],
        merged["quantity"],
        merged["per_member_limit"],
        merged["starts_at"],
        merged["ends_at"],
    )
    changes = {f: v for f, v in merged.items() if v != getattr(campaign, f)}
    for field_name, value in changes.items():
        setattr(campaign, field_name, value)
    if changes:
        await session.flush()
        record(
            session,
            "campaign.updated",
            "campaign",
            campaign.id,
            msgspec.to_builtins({"ref": campaign.ref, "changes": changes}),
        )
    return await _out_with_counts(session, kernel, campaign)


async def stop_campaign(session: AsyncSession, kernel: Kernel, campaign_id: uuid.UUID) -> CampaignOut:
    """End the campaign now: new codes and claims are refused (``campaign_not_active``, state ``stopped``).

    Idempotent: stopping a stopped campaign changes nothing. Claims already under way finish first (they
    hold a share lock on the campaign), so none is granted after this returns.
    """
    campaign = await get_campaign(session, campaign_id, lock="update")
    if campaign.stopped_at is None:
        campaign.stopped_at = utcnow()
        await session.flush()
        record(
            session,
            "campaign.stopped",
            "campaign",
            campaign.id,
            {"ref": campaign.ref, "stopped_at": campaign.stopped_at.isoformat()},
        )
    return await _out_with_counts(session, kernel, campaign)


async def resume_campaign(session: AsyncSession, kernel: Kernel, campaign_id: uuid.UUID) -> CampaignOut:
    """Undo a stop (idempotent); the campaign is then open again if its window and ``active`` allow."""
    campaign = await get_campaign(session, campaign_id, lock="update")
    if campaign.stopped_at is not None:
        stopped_at, campaign.stopped_at = campaign.stopped_at, None
        await session.flush()
        record(
            session,
            "campaign.resumed",
            "campaign",
            campaign.id,
            {"ref": campaign.ref, "stopped_at": stopped_at.isoformat()},
        )
    return await _out_with_counts(session, kernel, campaign)


def campaign_state(campaign: Campaign, now: dt.datetime | None = None) -> str:
    """``stopped``, ``inactive`` (paused), ``not_started``, ``ended`` or ``open``."""
    now = now or utcnow()
    if campaign.stopped_at is not None:
        return "stopped"
    if not campaign.active:
        return "inactive"
    if campaign.starts_at is not None and now < campaign.starts_at:
        return "not_started"
    if campaign.ends_at is not None and now >= campaign.ends_at:
        return "ended"
    return "open"


_CLOSED = {
    "stopped": ("The campaign has ended", "活动已结束"),
    "inactive": ("The campaign is not open", "活动暂未开放"),
    "not_started": ("The campaign has not started", "活动尚未开始"),
    "ended": ("The campaign has ended", "活动已结束"),
}


def _require_open(campaign: Campaign) -> None:
    state = campaign_state(campaign)
    if state != "open":
        en, zh = _CLOSED[state]
        raise CampaignClosed(en, zh, extra={"state": state})


async def open_campaign(session: AsyncSession, kernel: Kernel, token: str) -> tuple[Tenant, Campaign]:
    entry = await enter_tenant(session, kernel, token, "campaign")
    campaign = (
        await session.execute(select(Campaign).where(Campaign.id == entry.claims.object_id))
    ).scalar_one_or_none()
    if campaign is None:
        raise _invalid_link()
    return entry.tenant, campaign


def _campaign_subject(campaign: Campaign, cipher: TenantCipher, phone: str) -> str:
    return f"{campaign.id}:{digest_with(cipher, phone)[:32]}"


async def request_campaign_code(
    session: AsyncSession,
    kernel: Kernel,
    tenant: Tenant,
    campaign: Campaign,
    phone: str,
    *,
    ip: str | None = None,
    device_id: str | None = None,
) -> otp.SentCode:
    """Send a one-time code to ``phone`` for this campaign (refused while it is not open or while the
    requester's IP or device is locked out)."""
    _require_open(campaign)
    e164 = normalize_phone(phone)
    cipher = await kernel.keys.cipher(session)
    return await otp.send_code(
        session,
        kernel,
        "campaign",
        _campaign_subject(campaign, cipher, e164),
        e164,
        sender=tenant.name,
        requester=_requester(ip, device_id),
    )


async def confirm_campaign_code(
    session: AsyncSession,
    kernel: Kernel,
    campaign: Campaign,
    phone: str,
    code: str,
    *,
    ip: str | None = None,
    device_id: str | None = None,
) -> str:
    """The confirmed phone (E.164); a wrong code is counted (commit even on error), also as a failed
    ``claim`` of the IP and device (risk lockout, ``risk_refused``)."""
    _require_open(campaign)
    e164 = normalize_phone(phone)
    cipher = await kernel.keys.cipher(session)
    return await otp.check_code(
        session,
        kernel,
        "campaign",
        _campaign_subject(campaign, cipher, e164),
        code,
        requester=_requester(ip, device_id),
    )


async def _take_slot(session: AsyncSession, campaign: Campaign, member: Member) -> CampaignClaim:
    """The member's next claim ordinal; the unique (campaign, member, ordinal) key makes the limit exact
    under concurrency (a racing claim of the same ordinal waits, then fails over to the next one)."""
    used = (
        await session.execute(
            select(func.count())
            .select_from(CampaignClaim)
            .where(CampaignClaim.campaign_id == campaign.id, CampaignClaim.member_id == member.id)
        )
    ).scalar_one()
    for ordinal in range(used + 1, campaign.per_member_limit + 1):
        slot = CampaignClaim(id=new_id(), campaign_id=campaign.id, member_id=member.id, ordinal=ordinal)
        try:
            async with session.begin_nested():
                session.add(slot)
                await session.flush()
            return slot
        except IntegrityError:
            continue
    raise RiskRefused(
        "You have already claimed this as many times as allowed",
        "您已达到本活动的领取上限",
        extra={"reason": "campaign_member_limit", "limit": campaign.per_member_limit},
    )


async def claim(
    session: AsyncSession,
    kernel: Kernel,
    campaign_id: uuid.UUID,
    phone: str,
    ip: str | None = None,
    device_id: str | None = None,
) -> Grant:
    """Claim one lot (``campaign.quantity`` units) of the campaign's product for the member with ``phone``.

    The phone must already be confirmed by the caller (the page does it by one-time code). Runs in a
    savepoint of the caller's transaction; refuses with ``campaign_not_active``, ``risk_refused`` (the risk
    rules for ``claim``, or the campaign's per-member limit: reason ``campaign_member_limit``),
    ``out_of_stock``; a refusal leaves nothing behind.
    """
    # A share lock: a concurrent stop or edit waits for this claim, and a claim after it sees the change.
    campaign = await get_campaign(session, campaign_id, lock="share")
    _require_open(campaign)
    e164 = normalize_phone(phone)
    async with session.begin_nested():
        member = await find_or_create_member(session, kernel, phone=e164, source="claim")
        if member.status != "active":
            raise Conflict("This member is blocked", "该会员已被停用", code="member_blocked")
        subject = RiskSubject(
            member_id=member.id, phone_digest=member.phone_digest, ip=ip, device_id=device_id
        )
        async with guard(session, kernel.settings, "claim", subject, campaign.quantity):
            slot = await _take_slot(session, campaign, member)
            grant = await create_grant(
                session,
                kernel,
                GrantRequest(
                    product_id=campaign.product_id,
                    quantity=campaign.quantity,
                    phone=e164,
                    channel="none",
                    campaign_ref=campaign.ref,
                ),
                source="claim",
                ip=ip,
                device_id=device_id,
            )
            slot.grant_id = grant.id
            await session.flush()
    record(
        session,
        "campaign.claimed",
        "campaign",
        campaign.id,
        {
            "grant_id": str(grant.id),
            "member_id": str(member.id),
            "ordinal": slot.ordinal,
            "phone": mask_phone(e164),
        },
    )
    return grant
