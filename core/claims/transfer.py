"""Transfer (转赠): a member gives a held, unredeemed, unexpired unit to another phone.

The unit is marked ``transferred``, a new unit of the same code is held by the recipient, and a claim link
bound to the recipient's phone reaches them by SMS (through the outbox, sealed).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.catalog.models import Product
from core.catalog.services import find_product
from core.claims import otp, tokens
from core.claims.items import effective_status, member_item
from core.claims.links import link_out
from core.claims.models import ClaimLink
from core.claims.schemas import DEFAULT_LINK_TTL_SECONDS, ClaimLinkOut
from core.crypto.envelope import TenantCipher
from core.db.base import utcnow
from core.db.ids import new_id
from core.errors import Conflict, DomainError, FieldError, ValidationFailed
from core.events.services import emit
from core.grants.lifecycle import item_transition
from core.grants.models import GrantItem
from core.inventory.models import Code
from core.kernel import Kernel
from core.members.models import Member
from core.members.services import digest_with, find_or_create_member, normalize_phone
from core.notifications.branding import branding, sms_text
from core.risk.gate import RiskSubject, guard
from tenants.models import Tenant


class NotTransferable(DomainError):
    status, code = 409, "not_transferable"


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
    status = effective_status(item, code, now)
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
        recipient, new_item, link = await _hand_over(session, kernel, item, e164, now)
    token = tokens.sign(cipher, "claim_link", link.id, link.expires_at)
    out = link_out(kernel.settings, link, token)
    product = await find_product(session, code.product_id)
    await _send_link(session, cipher, tenant, giver, product, e164, out.url, link.id)
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


async def _hand_over(
    session: AsyncSession, kernel: Kernel, item: GrantItem, e164: str, now: dt.datetime
) -> tuple[Member, GrantItem, ClaimLink]:
    """The recipient, the unit they now hold (``item`` becomes ``transferred``) and their bound link."""
    recipient = await find_or_create_member(session, kernel, phone=e164, source="claim")
    if recipient.status != "active":
        raise Conflict("The recipient cannot receive codes", "对方账号暂不能接收券码", code="member_blocked")
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
    return recipient, new_item, link


async def _send_link(
    session: AsyncSession,
    cipher: TenantCipher,
    tenant: Tenant,
    giver: Member,
    product: Product,
    e164: str,
    url: str,
    link_id: uuid.UUID,
) -> None:
    """Queue the SMS that brings the recipient their claim link (once per link: the outbox business key)."""
    days = DEFAULT_LINK_TTL_SECONDS // 86_400
    params = {
        "tenant_name": tenant.name,
        "giver": giver.phone_masked or "好友",
        "product_name": product.name_zh,
        "days": str(days),
        "link": url,
    }
    body = sms_text(await branding(session, tenant.name), "claim_transfer", params)
    otp.queue_sms(
        session,
        cipher,
        e164,
        body,
        template="claim_transfer",
        params=params,
        business_key=f"{otp.SMS_ACTOR}:transfer:{link_id}",
    )
