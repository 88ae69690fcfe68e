"""A campaign's funnel: links sent → opened → claimed → redeemed, from rows the flows already write.

A campaign reaches people two ways: its public page (``/h5/campaign/<token>``) and personal claim links
(``/h5/c/<token>``) made through the API for grants tagged with the campaign's ref (``campaign_ref``). The
steps, each counted by one aggregate query:

- **sent**: personal claim links made for the campaign's grants (the public page has no "sent" step);
- **opened**: personal links viewed at least once (``claim_links.opened_at``, set by
  :func:`core.claims.links.open_link`) plus distinct visitors of the public page (:func:`record_visit`);
- **claimed**: personal links bound to a phone plus claims on the public page;
- **redeemed**: the campaign's grants with at least one redeemed code.

Each step's rate is over the step before it; the "opened" rate is the personal links' (opened / sent),
since public-page visitors were never sent anything.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from sqlalchemy import distinct, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.campaigns.models import Campaign, CampaignClaim, CampaignVisit
from core.claims.models import ClaimLink
from core.grants.models import Grant, GrantItem
from core.kernel import Kernel

__all__ = ["CampaignFunnel", "FunnelStep", "campaign_funnel", "record_visit"]


class FunnelStep(msgspec.Struct, kw_only=True):
    """One step: its count, and ``rate_bp`` (basis points of the step before; ``None`` when undefined)."""

    step: str
    count: int
    rate_bp: int | None


class CampaignFunnel(msgspec.Struct, kw_only=True):
    """The four steps, with the parts they add up from."""

    steps: list[FunnelStep]
    links_sent: int
    links_opened: int
    links_claimed: int
    page_visitors: int
    page_claims: int
    grants_redeemed: int


def _bp(numerator: int, denominator: int) -> int | None:
    return (numerator * 10_000 + denominator // 2) // denominator if denominator else None


async def record_visit(
    session: AsyncSession, kernel: Kernel, campaign: Campaign, ip: str | None, user_agent: str | None
) -> None:
    """Count a view of the campaign's public page, once per visitor (address and browser, as a keyed
    digest: nothing personal is stored). One ``INSERT … ON CONFLICT DO NOTHING``."""
    cipher = await kernel.keys.cipher(session)
    visitor = cipher.digest(f"campaign-visit\x1f{campaign.id}\x1f{ip or ''}\x1f{user_agent or ''}".encode())
    insert: Any = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        insert(CampaignVisit)
        .values(campaign_id=campaign.id, visitor=visitor)
        .on_conflict_do_nothing(index_elements=["tenant_id", "campaign_id", "visitor"])
    )


async def campaign_funnel(session: AsyncSession, campaign_id: uuid.UUID, ref: str) -> CampaignFunnel:
    """The funnel of the campaign ``campaign_id`` (whose ref is ``ref``; see the module doc): four aggregate
    queries, no rows read."""
    links = (
        await session.execute(
            select(func.count(ClaimLink.id), func.count(ClaimLink.opened_at), func.count(ClaimLink.bound_at))
            .select_from(ClaimLink)
            .join(Grant, Grant.id == ClaimLink.grant_id)
            .where(Grant.campaign_ref == ref, ClaimLink.source == "api")
        )
    ).one()
    visitors = await session.scalar(
        select(func.count()).select_from(CampaignVisit).where(CampaignVisit.campaign_id == campaign_id)
    )
    claims = await session.scalar(
        select(func.count())
        .select_from(CampaignClaim)
        .where(CampaignClaim.campaign_id == campaign_id, CampaignClaim.grant_id.is_not(None))
    )
    redeemed = await session.scalar(
        select(func.count(distinct(Grant.id)))
        .select_from(Grant)
        .join(GrantItem, GrantItem.grant_id == Grant.id)
        .where(Grant.campaign_ref == ref, GrantItem.status == "redeemed")
    )
    sent, opened_links, bound = (int(v or 0) for v in links)
    visitors, claims, redeemed = int(visitors or 0), int(claims or 0), int(redeemed or 0)
    opened, claimed = opened_links + visitors, bound + claims
    return CampaignFunnel(
        steps=[
            FunnelStep(step="sent", count=sent, rate_bp=None),
            FunnelStep(step="opened", count=opened, rate_bp=_bp(opened_links, sent)),
            FunnelStep(step="claimed", count=claimed, rate_bp=_bp(claimed, opened)),
            FunnelStep(step="redeemed", count=redeemed, rate_bp=_bp(redeemed, claimed)),
        ],
        links_sent=sent,
        links_opened=opened_links,
        links_claimed=bound,
        page_visitors=visitors,
        page_claims=claims,
        grants_redeemed=redeemed,
    )
