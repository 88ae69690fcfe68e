"""Campaigns (活动): a public claim page per campaign, the tenant's management of it, and the claim itself.

The API (``core.campaigns.api``), the console pages and the member's H5 campaign page call these services.
A visitor confirms a phone by one-time SMS code (``core.claims.otp``, purpose ``campaign``) and claims one
lot (``quantity`` units) of the product, at most ``per_member_limit`` times; the claim is a grant.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from sqlalchemy import and_, distinct, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.campaigns import shortlinks
from core.campaigns.models import Campaign, CampaignClaim
from core.campaigns.schemas import (
    MAX_CLAIM_QUANTITY,
    MAX_PER_MEMBER_LIMIT,
    CampaignCreate,
    CampaignOut,
    CampaignPage,
    CampaignUpdate,
)
from core.catalog.models import Product
from core.claims import otp, tokens
from core.claims.access import absolute, enter_tenant, invalid_link, requester
from core.crypto.envelope import TenantCipher
from core.db.base import utcnow
from core.db.ids import new_id, readable_ref
from core.db.paging import keyset_page
from core.errors import Conflict, DomainError, FieldError, NotFound, ValidationFailed
from core.grants.models import Grant, GrantItem
from core.grants.schemas import GrantRequest
from core.grants.services import create_grant
from core.kernel import Kernel
from core.members.consent import record_consent, require_consent
from core.members.models import Member
from core.members.services import digest_with, find_or_create_member, mask_phone, normalize_phone
from core.risk.gate import RiskRefused, RiskSubject, guard
from core.settings import Settings
from tenants.models import Tenant

MAX_PAGE = 200


class CampaignClosed(DomainError):
    status, code = 409, "campaign_not_active"


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
        short_code=c.short_code,
        short_url=absolute(settings, shortlinks.short_path(c.short_code)) if c.short_code else None,
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
        short_code=await shortlinks.reserve(session),
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
    page = await keyset_page(session, select(Campaign), Campaign.id, cursor=cursor, limit=limit)
    counts = await campaign_counts(session, [c.id for c in page.items])
    cipher = await kernel.keys.cipher(session)
    items = [_campaign_out(kernel.settings, cipher, c, counts.get(c.id, _NO_COUNTS)) for c in page.items]
    return CampaignPage(items, page.next_cursor)


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
    """The campaign behind a page token (its tenant becomes current); ``invalid_link`` if bad or unknown."""
    entry = await enter_tenant(session, kernel, token, "campaign")
    campaign = (
        await session.execute(select(Campaign).where(Campaign.id == entry.claims.object_id))
    ).scalar_one_or_none()
    if campaign is None:
        raise invalid_link()
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
    consent: str | None = None,
    ip: str | None = None,
    device_id: str | None = None,
) -> otp.SentCode:
    """Send a one-time code to ``phone`` for this campaign (refused while it is not open, without the
    privacy consent, while the requester's IP or device is locked out, or for a blocklisted phone, device
    or IP). The consent is recorded with the send."""
    _require_open(campaign)
    version = require_consent(consent)
    e164 = normalize_phone(phone)
    cipher = await kernel.keys.cipher(session)
    sent = await otp.send_code(
        session,
        kernel,
        "campaign",
        _campaign_subject(campaign, cipher, e164),
        e164,
        sender=tenant.name,
        requester=requester(ip, device_id),
    )
    record_consent(session, cipher, e164, "campaign", version, ip=ip)
    return sent


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
        requester=requester(ip, device_id),
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
