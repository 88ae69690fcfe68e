"""Short links of campaigns: ``/c/<code>`` at the site root, redirecting to the campaign's H5 page.

A code is 6 random Crockford base32 characters (4–8 accepted when read; a collision lengthens the next try),
unique on the whole platform: it is reserved by inserting it into :class:`~core.campaigns.models.ShortCode`
(primary key) in the transaction that creates the campaign. The link names no tenant, so the campaign is found
by its code under a named cross-tenant bypass, and only then is its tenant entered and its H5 token signed.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.campaigns.models import Campaign, ShortCode
from core.claims import tokens
from core.db.context import cross_tenant
from core.db.session import bind_tenant
from core.kernel import Kernel
from tenants.models import Tenant

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I L O U
CODE_LENGTH = 6
MIN_LENGTH, MAX_LENGTH = 4, 8
_ATTEMPTS = 8
_TYPO = str.maketrans({"I": "1", "L": "1", "O": "0"})
_SHAPE = re.compile(f"[{ALPHABET}]{{{MIN_LENGTH},{MAX_LENGTH}}}")


def short_path(code: str) -> str:
    return f"/c/{code}"


def normalise(text: str) -> str | None:
    """The code a person typed (any case; I/L read as 1 and O as 0, as Crockford decodes), or None when it
    cannot be one."""
    code = text.strip().upper().translate(_TYPO)
    return code if _SHAPE.fullmatch(code) else None


def _random(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


async def reserve(session: AsyncSession) -> str:
    """A new platform-unique code, reserved in this transaction (a savepoint takes each try)."""
    for attempt in range(_ATTEMPTS):
        code = _random(min(CODE_LENGTH + attempt // 3, MAX_LENGTH))
        try:
            async with session.begin_nested():
                session.add(ShortCode(code=code))
        except IntegrityError:
            continue
        return code
    raise RuntimeError("no free short code after several tries")  # 32^6 codes: practically unreachable


@dataclass(frozen=True)
class ShortTarget:
    tenant_id: uuid.UUID
    campaign_id: uuid.UUID
    path: str  # the campaign's H5 page, ``/h5/campaign/<token>``


async def resolve(session: AsyncSession, kernel: Kernel, text: str) -> ShortTarget | None:
    """Where ``/c/<text>`` leads, or None (malformed, unknown, or its tenant suspended). Enters the tenant."""
    code = normalise(text)
    if code is None:
        return None
    with cross_tenant("public short link: find the campaign of a code"):
        row = (
            await session.execute(select(Campaign.tenant_id, Campaign.id).where(Campaign.short_code == code))
        ).first()
    if row is None:
        return None
    tenant_id, campaign_id = row
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None or not tenant.is_active:
        return None
    await bind_tenant(session, tenant_id)
    cipher = await kernel.keys.cipher(session)
    return ShortTarget(tenant_id, campaign_id, f"/h5/campaign/{tokens.sign(cipher, 'campaign', campaign_id)}")
