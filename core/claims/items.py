"""What a holder sees: the member's units (grant items) on the claim and "my codes" pages.

The codes themselves stay in the vault and are unsealed only for the holder's page (audited).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.catalog.models import Product
from core.claims.models import ClaimLink
from core.claims.qr import qr_svg
from core.db.base import utcnow
from core.errors import NotFound
from core.expiry import expiry_text, zone
from core.grants.models import GrantItem
from core.inventory.models import Code
from core.inventory.vault import masked as masked_code
from core.inventory.vault import scan_payload, unseal
from core.kernel import Kernel
from core.members.models import Member
from tenants.models import Tenant


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


def effective_status(item: GrantItem, code: Code, now: dt.datetime) -> str:
    """The unit's status as the member sees it: a held unit whose code was used or lapsed says so."""
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
        status = effective_status(item, code, now)
        view = ItemView(
            id=item.id,
            product_name=product.name_zh or product.name_en,
            status=status,
            masked=masked_code(code.last4),
            expires_on=expiry_text(item.expires_at, zone(tenant.timezone)),
            usage_rules=product.usage_rules or "",
            face_value=product.face_value,
            currency=product.currency,
            transferable=status == "held",
            transferred_to=recipients.get(item.transferred_to_id) if item.transferred_to_id else None,
        )
        if cipher is not None and status == "held":
            view.number, view.pin = unseal(cipher, code.digest, code.secret)
            view.qr = qr_svg(scan_payload(view.number, view.pin), label=f"{view.product_name} {view.masked}")
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
    """One unit of the member's (``lock``: row-locked); ``404 item_not_found`` for anyone else's."""
    q = select(GrantItem).where(GrantItem.id == item_id, GrantItem.member_id == member_id)
    if lock:
        q = q.with_for_update()
    item = (await session.execute(q)).scalar_one_or_none()
    if item is None:
        raise NotFound("Code not found", "券码不存在", code="item_not_found")
    return item
