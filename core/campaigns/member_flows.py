"""The campaign steps of the member pages (``/h5/campaign/<token>``), each a whole unit of work over the
request's session: a wrong one-time code is counted (and may lock the phone), and the code that confirmed
the phone stays used when the claim after it is refused, so both refusals commit before they are raised.
A refused claim itself leaves nothing behind (it runs in a savepoint)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.campaigns.models import Campaign, CampaignClaim
from core.campaigns.services import claim, confirm_campaign_code
from core.claims.member_flows import commit_refusal
from core.grants.services import grant_items
from core.kernel import Kernel
from core.members.services import by_phone_digest, normalize_phone, phone_digest


@dataclass(frozen=True)
class ClaimedLot:
    """A claimed campaign lot: who holds it now and its units (in id order)."""

    member_id: uuid.UUID
    item_ids: list[uuid.UUID]


async def confirm_campaign_phone(
    session: AsyncSession,
    kernel: Kernel,
    campaign: Campaign,
    phone: str,
    code: str,
    *,
    ip: str | None = None,
    device_id: str | None = None,
) -> str:
    """The phone (E.164) the campaign's one-time ``code`` confirms; a refused code is committed as counted
    (the attempt and any lock stick) before the refusal is raised."""
    return await commit_refusal(
        session,
        confirm_campaign_code(session, kernel, campaign, phone, code, ip=ip, device_id=device_id),
    )


async def claim_campaign_lot(
    session: AsyncSession,
    kernel: Kernel,
    campaign_id: uuid.UUID,
    phone: str,
    *,
    ip: str | None = None,
    device_id: str | None = None,
) -> ClaimedLot:
    """Claim one lot for the confirmed ``phone``; a refused claim leaves nothing of itself behind, and the
    one-time code used to confirm the phone is committed as used before the refusal is raised."""
    grant = await commit_refusal(
        session, claim(session, kernel, campaign_id, phone, ip=ip, device_id=device_id)
    )
    if grant.member_id is None:  # a campaign grant always goes to the claiming member
        raise RuntimeError(f"claimed grant {grant.id} has no member")
    items = await grant_items(session, grant.id)
    return ClaimedLot(member_id=grant.member_id, item_ids=[i.id for i in items])


async def earlier_lot(
    session: AsyncSession, kernel: Kernel, campaign_id: uuid.UUID, phone: str
) -> ClaimedLot | None:
    """The lot the confirmed ``phone`` claimed last in this campaign (its member and units), for the page
    that refuses a claim at the per-member limit; None when there is none."""
    member = await by_phone_digest(session, await phone_digest(session, kernel, normalize_phone(phone)))
    if member is None:
        return None
    grant_id = (
        await session.execute(
            select(CampaignClaim.grant_id)
            .where(
                CampaignClaim.campaign_id == campaign_id,
                CampaignClaim.member_id == member.id,
                CampaignClaim.grant_id.is_not(None),
            )
            .order_by(CampaignClaim.ordinal.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if grant_id is None:
        return None
    items = await grant_items(session, grant_id)
    return ClaimedLot(member_id=member.id, item_ids=[i.id for i in items if i.member_id == member.id])
