"""Exporting grants to XLSX, filtered like the grant list (status, a member's phone, a card number).

The same rules as the member export (:mod:`core.members.export`): owners and admins, one audit event
(``grants.exported``) per export, phones masked unless the owner asks for them whole, at most
:data:`~core.members.export.EXPORT_CAP` rows (``422 export_too_large`` beyond, before anything is written).
Codes are never in the file: only their mask (``•••• 89``).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.catalog.models import Product
from core.grants.models import GRANT_STATUSES, Grant
from core.grants.search import grant_search
from core.kernel import Kernel
from core.members.export import local_text, rows_within_cap, tenant_clock
from core.members.models import Member
from core.members.services import PHONE_AAD
from core.xlsx import workbook

_HEAD = (
    "Grant / 发放单号",
    "Status / 状态",
    "SKU",
    "Product / 商品",
    "Quantity / 数量",
    "Channel / 发送方式",
    "Recipient / 接收人",
    "Campaign / 活动",
    "Source / 来源",
    "Created / 创建时间",
    "Delivered / 送达时间",
)


async def _phones(
    session: AsyncSession, kernel: Kernel, member_ids: set[uuid.UUID], *, full: bool
) -> dict[uuid.UUID, str]:
    """The members' phones: masked, or whole when ``full`` (decrypted in memory, for this file only)."""
    if not member_ids:
        return {}
    cipher = await kernel.keys.cipher(session) if full else None
    found = await session.execute(
        select(Member.id, Member.phone_masked, Member.phone_secret, Member.phone_digest).where(
            Member.id.in_(member_ids)
        )
    )
    phones: dict[uuid.UUID, str] = {}
    for mid, masked, secret, digest in found.all():
        if cipher is not None and secret is not None and digest is not None:
            phones[mid] = cipher.decrypt(secret, aad=PHONE_AAD + digest.encode()).decode("ascii")
        elif masked:
            phones[mid] = masked
    return phones


async def export_grants(
    session: AsyncSession,
    kernel: Kernel,
    *,
    status: str | None = None,
    phone: str | None = None,
    code: str | None = None,
    full_phones: bool = False,
) -> tuple[str, bytes, int]:
    """(file name, XLSX bytes, row count) of the grants the list would show for this filter, newest first."""
    stmt = select(Grant)
    if status in GRANT_STATUSES:
        stmt = stmt.where(Grant.status == status)
    matching = await grant_search(session, kernel, phone=phone, code=code)
    if matching is not None:
        stmt = stmt.where(matching)
    count = await rows_within_cap(session, stmt)
    _name, zone = await tenant_clock(session)
    grants = list((await session.execute(stmt.order_by(Grant.id.desc()))).scalars())
    products = (
        {
            p.id: p
            for p in (
                await session.execute(select(Product).where(Product.id.in_({g.product_id for g in grants})))
            ).scalars()
        }
        if grants
        else {}
    )
    phones = await _phones(session, kernel, {g.member_id for g in grants if g.member_id}, full=full_phones)
    rows = []
    for g in grants:
        p = products.get(g.product_id)
        recipient = (phones.get(g.member_id) if g.member_id else None) or g.contact_masked or ""
        rows.append(
            (
                g.ref,
                g.status,
                p.sku if p else "",
                p.name_zh if p else "",
                g.quantity,
                g.channel or "",
                recipient,
                g.campaign_ref or "",
                g.source,
                local_text(g.created_at, zone),
                local_text(g.delivered_at, zone),
            )
        )
    body = await workbook("Grants", _HEAD, rows)
    record(
        session,
        "grants.exported",
        "export",
        "grants",
        {
            "rows": count,
            "status": status or "",
            "phone_search": bool(phone),
            "code_search": bool(code),
            "full_phones": full_phones,
        },
    )
    stamp = dt.datetime.now(zone).strftime("%Y%m%d-%H%M")
    return f"grants-{stamp}.xlsx", body, count
