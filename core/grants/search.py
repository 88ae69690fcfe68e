"""Finding grants by a member's phone or by a code's card number, without decrypting anything.

A phone is normalised (``+86``, spaces and dashes as typed) and looked up by its tenant-keyed HMAC digest
(``members.phone_digest``); a card number by the digest of its canonical form (``codes.digest``, the same key
redemption uses). Both are indexed equality lookups: no scan over ciphertexts, at any size.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.grants.models import Grant, GrantItem
from core.inventory.models import Code
from core.inventory.vault import MAX_CODE_LENGTH, clean, digest_of
from core.kernel import Kernel
from core.members.models import Member
from core.members.services import digest_with, normalize_phone


async def grant_search(
    session: AsyncSession, kernel: Kernel, *, phone: str | None = None, code: str | None = None
) -> ColumnElement[bool] | None:
    """A condition on :class:`Grant` for the grants of a phone's member (granted to it, or holding one of its
    codes after a transfer) and/or of a card number; None when neither is given.

    ``422 invalid_phone`` for a phone that is not a mainland mobile number; a code that cannot exist
    (empty or too long once cleaned) matches nothing."""
    conditions: list[ColumnElement[bool]] = []
    cipher = await kernel.keys.cipher(session) if (phone or code) else None
    if phone and phone.strip() and cipher is not None:
        digest = digest_with(cipher, normalize_phone(phone))
        member = select(Member.id).where(Member.phone_digest == digest).scalar_subquery()
        held = select(GrantItem.grant_id).where(GrantItem.member_id == member)
        conditions.append(or_(Grant.member_id == member, Grant.id.in_(held)))
    if code and code.strip() and cipher is not None:
        if not clean(code) or len(clean(code)) > MAX_CODE_LENGTH:
            conditions.append(false())
        else:
            ids = select(Code.id).where(Code.digest == digest_of(cipher, code))
            conditions.append(Grant.id.in_(select(GrantItem.grant_id).where(GrantItem.code_id.in_(ids))))
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else conditions[0] & conditions[1]
