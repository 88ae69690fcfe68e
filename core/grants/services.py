"""Grants: hand codes from stock to a member or a contact, deliver them, void undelivered ones.

``create_grant`` is the one way every surface (API, console, bulk job, claim) gives codes away: it resolves
or creates the member, asks the risk gate, allocates from inventory, records the grant and its items with
an audit event and a ``grant.created`` event, and queues delivery through the outbox — all in the caller's
transaction. The contact used for delivery is kept AES-GCM encrypted on the grant; the codes stay in the
vault and are unsealed only by the delivery job (or for a caller allowed to reveal them).
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, event, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from core.audit.services import record
from core.catalog.models import Product
from core.catalog.schemas import ProductFilter, ProductOut
from core.catalog.services import MAX_PAGE as PRODUCT_PAGE
from core.catalog.services import cached_product, find_products, list_products
from core.crypto.envelope import TenantCipher
from core.db.base import utcnow
from core.db.ids import new_id, readable_ref
from core.db.paging import keyset_select
from core.db.results import rowcount
from core.db.session import KaquanSession, get_scoped
from core.errors import Conflict, DomainError, FieldError, NotFound, ValidationFailed
from core.events.services import emit
from core.grants.lifecycle import check_grant, grant_can, grant_sources, item_transition
from core.grants.models import GRANT_STATUSES, Grant, GrantItem
from core.grants.schemas import (
    CHANNELS,
    MAX_GRANT_QUANTITY,
    GrantCodeOut,
    GrantMemberOut,
    GrantOut,
    GrantPage,
    GrantRequest,
)
from core.grants.writes import CREATED_EVENT, NewGrant, NewItem, write_grants
from core.inventory.allocation import ALLOCATABLE_KINDS, MAX_QUANTITY, AllocatedCode, OutOfStock, allocate
from core.inventory.models import Code
from core.inventory.vault import masked, unseal
from core.kernel import Kernel
from core.members.models import Member
from core.members.services import (
    digest_with,
    find_or_create_member,
    mask_phone,
    member_phone,
    normalize_email,
    normalize_phone,
    seal_phone,
)
from core.risk import engine
from core.risk.gate import RiskSubject, guard
from plugins import mask_recipient

__all__ = [
    "DELIVERY_ACTOR",
    "VOIDABLE_STATUSES",
    "create_grant",
    "get_grant",
    "grant_many",
    "grant_out",
    "grantable_products",
    "items_of_member",
    "list_grants",
    "normalize_phone",
    "void_grant",
]

DELIVERY_ACTOR = "deliver_grant"
VOIDABLE_STATUSES = grant_sources("void")  # created, delivery_failed
CONTACT_AAD = b"grant-contact:"
MAX_PAGE = 200
# Grants created in this session: their items, code last-4s and member, so the answer to the request that
# created them is built without reading back what was just written.
_JUST_CREATED = "kaquan_grants_just_created"


@event.listens_for(KaquanSession, "after_commit")
@event.listens_for(KaquanSession, "after_soft_rollback")
def _forget_just_created(session: Session, *_: object) -> None:
    """A long-lived session (a bulk job) must not keep every grant it made: the parts live one transaction."""
    session.info.pop(_JUST_CREATED, None)


def _quantity_error() -> ValidationFailed:
    return ValidationFailed(
        f"Quantity must be between 1 and {MAX_GRANT_QUANTITY}",
        f"数量必须在 1 到 {MAX_GRANT_QUANTITY} 之间",
        errors=[FieldError(field="quantity", message=f"1..{MAX_GRANT_QUANTITY}", code="out_of_range")],
    )


def _check(data: GrantRequest) -> None:
    if not 1 <= data.quantity <= MAX_GRANT_QUANTITY:
        raise _quantity_error()
    if data.channel is not None and data.channel not in CHANNELS:
        raise ValidationFailed(
            "Unknown delivery channel",
            "未知的发放渠道",
            errors=[FieldError(field="channel", message=f"one of {', '.join(CHANNELS)}", code="invalid")],
        )
    if data.campaign_ref is not None and len(data.campaign_ref) > 120:
        raise ValidationFailed(
            "campaign_ref is too long",
            "活动编号过长",
            errors=[FieldError(field="campaign_ref", message="at most 120 characters", code="too_long")],
        )


async def grantable_products(session: AsyncSession) -> list[ProductOut]:
    """Products a grant (or a campaign's claim) can give: active code products and bundles, newest first."""
    page = await list_products(session, ProductFilter(status="active"), None, PRODUCT_PAGE)
    return [p for p in page.items if p.kind in ALLOCATABLE_KINDS or p.kind == "bundle"]


def seal_contact(cipher: TenantCipher, grant_id: uuid.UUID, contact: str) -> bytes:
    return cipher.encrypt(contact.encode("utf-8"), aad=CONTACT_AAD + grant_id.bytes)


def open_contact(cipher: TenantCipher, grant: Grant) -> str | None:
    """The grant's delivery contact in plaintext (delivery only)."""
    if grant.contact_secret is None:
        return None
    return cipher.decrypt(grant.contact_secret, aad=CONTACT_AAD + grant.id.bytes).decode("utf-8")


async def _contact(
    session: AsyncSession,
    kernel: Kernel,
    data: GrantRequest,
    member: Member,
    phone: str | None,
    email: str | None,
) -> tuple[str | None, str | None]:
    """(channel, contact) for delivery: the asked channel, or the phone first, then the e-mail."""
    if data.channel == "none":
        return None, None
    phone = phone or await member_phone(session, kernel, member)
    email = email or member.email
    if data.channel == "sms" or (data.channel is None and phone):
        if not phone:
            raise ValidationFailed(
                "SMS delivery needs a phone number",
                "短信发放需要手机号",
                errors=[FieldError(field="phone", message="required for channel sms", code="required")],
            )
        return "sms", phone
    if data.channel == "email" or (data.channel is None and email):
        if not email:
            raise ValidationFailed(
                "E-mail delivery needs an e-mail address",
                "邮件发放需要邮箱",
                errors=[FieldError(field="email", message="required for channel email", code="required")],
            )
        return "email", email
    return None, None


def _item_expiry(product: Product, code_expiry: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
    """When a granted unit stops being usable: the code's expiry, shortened by a days-after-issue rule."""
    if product.validity_kind == "days_after_issue" and product.validity_days:
        rule = now + dt.timedelta(days=product.validity_days)
        return min(rule, code_expiry) if code_expiry else rule
    if product.validity_kind == "fixed_date" and product.validity_date:
        return min(product.validity_date, code_expiry) if code_expiry else product.validity_date
    return code_expiry


def _new_grant(
    cipher: TenantCipher,
    data: GrantRequest,
    product_id: uuid.UUID,
    member_id: uuid.UUID,
    channel: str | None,
    contact: str | None,
    source: str,
    client_id: uuid.UUID | None,
    user_id: uuid.UUID | None,
) -> Grant:
    """A new ``created`` grant; the contact is kept masked for display and sealed for delivery."""
    grant_id = new_id()
    masked_contact: str | None = None
    secret: bytes | None = None
    if contact is not None:
        masked_contact = mask_phone(contact) if channel == "sms" else mask_recipient(contact)
        secret = seal_contact(cipher, grant_id, contact)
    # every column but tenant_id and created_at (stamped when it is written: core.grants.writes)
    return Grant(
        id=grant_id,
        ref=readable_ref("G"),
        product_id=product_id,
        quantity=data.quantity,
        member_id=member_id,
        channel=channel,
        contact_masked=masked_contact,
        contact_secret=secret,
        campaign_ref=(data.campaign_ref or "").strip() or None,
        source=source,
        client_id=client_id,
        user_id=user_id,
        status="created",
        delivered_at=None,
        delivery_detail=None,
        voided_at=None,
        void_reason=None,
    )


def _new_items(product: Product, codes: Sequence[AllocatedCode], now: dt.datetime) -> list[NewItem]:
    """The grant's units, one ``held`` item per allocated code, each with its own expiry."""
    return [NewItem(new_id(), c.id, "held", _item_expiry(product, c.expires_at, now)) for c in codes]


async def create_grant(
    session: AsyncSession,
    kernel: Kernel,
    data: GrantRequest,
    *,
    source: str,
    client_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    ip: str | None = None,
    device_id: str | None = None,
) -> Grant:
    """Grant ``data.quantity`` units of a product; see the module docstring. All in the caller's transaction.

    Raises ValidationFailed (bad input), NotFound (product or member), OutOfStock, RiskRefused.
    """
    _check(data)
    phone = normalize_phone(data.phone) if data.phone and data.phone.strip() else None
    email = normalize_email(data.email) if data.email and data.email.strip() else None
    product = await cached_product(session, data.product_id)  # read-only here; stock is checked in SQL
    member = await find_or_create_member(
        session,
        kernel,
        member_id=data.member_id,
        external_id=data.external_id,
        phone=phone,
        email=email,
        name=data.name,
        source="grant",
        upsert=True,  # by external id or by phone: one statement (a grant touches one member)
    )
    if member.status != "active":
        raise Conflict("This member is blocked", "该会员已被停用", code="member_blocked")
    channel, contact = await _contact(session, kernel, data, member, phone, email)
    cipher = await kernel.keys.cipher(session)
    grant = _new_grant(cipher, data, product.id, member.id, channel, contact, source, client_id, user_id)
    subject = RiskSubject(
        member_id=member.id, phone_digest=member.phone_digest, ip=ip, device_id=device_id, client_id=client_id
    )
    async with guard(session, kernel.settings, "grant", subject, data.quantity):
        with session.no_autoflush:  # the allocation's audit event is flushed with the grant's, in one INSERT
            allocation = await allocate(
                session, product.id, data.quantity, f"grant:{grant.ref}", product=product
            )
        new = await _add_grants(session, [(grant, member, product, allocation.codes)], source, utcnow())
        await session.flush()  # the audit events (the rest was written by core.grants.writes)
    last4 = {c.id: c.last4 for c in allocation.codes}
    session.info.setdefault(_JUST_CREATED, {})[grant.id] = (new[0].items, last4, member)
    return grant


async def get_grant(session: AsyncSession, grant_id: uuid.UUID, *, for_update: bool = False) -> Grant:
    stmt = select(Grant).where(Grant.id == grant_id)
    if for_update:
        stmt = stmt.with_for_update()
    grant = (await session.execute(stmt)).scalar_one_or_none()
    if grant is None:
        raise NotFound("Grant not found", "发放记录不存在", code="grant_not_found")
    return grant


async def grant_items(session: AsyncSession, grant_id: uuid.UUID) -> list[GrantItem]:
    return list(
        (
            await session.execute(
                select(GrantItem).where(GrantItem.grant_id == grant_id).order_by(GrantItem.id)
            )
        ).scalars()
    )


async def items_of_member(session: AsyncSession, member_id: uuid.UUID) -> list[GrantItem]:
    """The units a member holds now (status ``held``), soonest-expiring first."""
    rows = (
        await session.execute(
            select(GrantItem).where(GrantItem.member_id == member_id, GrantItem.status == "held")
        )
    ).scalars()
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    return sorted(rows, key=lambda i: (i.expires_at or far, i.id))


async def void_grant(session: AsyncSession, kernel: Kernel, grant_id: uuid.UUID, reason: str) -> Grant:
    """Void an undelivered grant (``created`` or ``delivery_failed``): its codes go back to stock."""
    reason = (reason or "").strip()
    if len(reason) < 2:
        raise ValidationFailed(
            "State a reason",
            "请填写作废原因",
            errors=[FieldError(field="reason", message="required", code="required")],
        )
    grant = await get_grant(session, grant_id, for_update=True)
    if not grant_can(grant.status, "void"):
        raise Conflict(
            f"A {grant.status} grant cannot be voided",
            f"状态为 {grant.status} 的发放不能作废",
            code="grant_not_voidable",
            extra={"status": grant.status},
        )
    items = [i for i in await grant_items(session, grant.id) if i.status == "held"]
    if any(i.revealed_at is not None for i in items):
        # Someone has seen these codes in plaintext: back in stock they could be redeemed twice.
        raise Conflict(
            "The codes of this grant were already shown in plaintext, so they cannot go back to stock; "
            "void the codes in the inventory instead",
            "该发放的卡密已以明文展示过，不能退回库存；如需作废，请在库存中作废这些卡密",
            code="grant_codes_revealed",
        )
    uses: dict[uuid.UUID, int] = {}
    for item in items:
        uses[item.code_id] = uses.get(item.code_id, 0) + 1
        item.status = item_transition(item.status, "void")
    now = utcnow()
    if uses:
        codes = list(
            (await session.execute(select(Code).where(Code.id.in_(list(uses))).with_for_update())).scalars()
        )
        for code in codes:
            if code.uses_left is not None:  # a reusable code gets its uses back
                code.uses_left += uses[code.id]
            if code.state in ("issued", "available"):
                code.state = "available"
                code.purpose = None
                code.state_changed_at = now
    check_grant(grant.status, "void", "voided")
    grant.status = "voided"
    grant.voided_at = now
    grant.void_reason = reason[:500]
    await session.flush()
    facts = {"ref": grant.ref, "reason": grant.void_reason, "codes": sorted(str(c) for c in uses)}
    record(session, "grant.voided", "grant", grant.id, facts)
    emit(session, "grant.voided", grant.id, facts)
    return grant


async def mark_delivered(session: AsyncSession, grant_id: uuid.UUID, connector_id: str) -> bool:
    """Record a delivery: ``created``/``delivery_failed`` → ``delivered``; a grant already (partly) redeemed
    keeps its status and gets ``delivered_at``. False when the grant moved on (voided, expired)."""
    now = utcnow()
    detail = f"accepted by {connector_id}"
    result = await session.execute(
        update(Grant)
        .where(Grant.id == grant_id, Grant.status.in_(grant_sources("deliver")))
        .values(status="delivered", delivered_at=now, delivery_detail=detail),
        execution_options={"synchronize_session": False},
    )
    if not rowcount(result):
        late = await session.execute(
            update(Grant)
            .where(
                Grant.id == grant_id,
                Grant.status.in_(("partially_redeemed", "redeemed")),
                Grant.delivered_at.is_(None),
            )
            .values(delivered_at=now, delivery_detail=detail),
            execution_options={"synchronize_session": False},
        )
        if not rowcount(late):
            return False
    grant = await get_grant(session, grant_id)
    facts = {"ref": grant.ref, "channel": grant.channel, "connector": connector_id}
    record(session, "grant.delivered", "grant", grant_id, facts)
    emit(session, "grant.delivered", grant_id, facts)
    return True


async def mark_delivery_failed(
    session: AsyncSession, grant_id: uuid.UUID, connector_id: str, detail: str
) -> bool:
    """``created`` → ``delivery_failed`` with the notifier's reason (no secrets in it)."""
    result = await session.execute(
        update(Grant)
        .where(Grant.id == grant_id, Grant.status.in_(grant_sources("delivery_fail")))
        .values(status="delivery_failed", delivery_detail=f"{connector_id}: {detail}"[:500]),
        execution_options={"synchronize_session": False},
    )
    if not rowcount(result):
        return False
    grant = await get_grant(session, grant_id)
    facts = {"ref": grant.ref, "channel": grant.channel, "connector": connector_id, "detail": detail[:300]}
    record(session, "grant.delivery_failed", "grant", grant_id, facts)
    emit(session, "grant.delivery_failed", grant_id, facts)
    return True


async def list_grants(
    session: AsyncSession,
    *,
    after: uuid.UUID | None = None,
    limit: int = 50,
    member_id: uuid.UUID | None = None,
    status: str | None = None,
    campaign_ref: str | None = None,
    created_since: dt.datetime | None = None,
    created_until: dt.datetime | None = None,
    matching: ColumnElement[bool] | None = None,
) -> list[Grant]:
    """Newest first; ``limit + 1`` rows are fetched so the caller can tell whether there is a next page.
    ``created_since``/``created_until`` bound the creation time (``[since, until)``); ``matching``: a further
    condition (the phone/code search of :mod:`core.grants.search`)."""
    if status is not None and status not in GRANT_STATUSES:
        raise ValidationFailed(
            "Unknown grant status",
            "未知的发放状态",
            errors=[
                FieldError(field="status", message=f"one of {', '.join(GRANT_STATUSES)}", code="invalid")
            ],
        )
    limit = max(1, min(limit, MAX_PAGE))
    stmt = select(Grant)
    if member_id is not None:
        stmt = stmt.where(Grant.member_id == member_id)
    if status:
        stmt = stmt.where(Grant.status == status)
    if campaign_ref:
        stmt = stmt.where(Grant.campaign_ref == campaign_ref)
    if created_since is not None:
        stmt = stmt.where(Grant.created_at >= created_since)
    if created_until is not None:
        stmt = stmt.where(Grant.created_at < created_until)
    if matching is not None:
        stmt = stmt.where(matching)
    return list((await session.execute(keyset_select(stmt, Grant.id, cursor=after, limit=limit))).scalars())


def _code_out(item: GrantItem | NewItem, last4: str) -> GrantCodeOut:
    return GrantCodeOut(
        item_id=item.id,
        code_id=item.code_id,
        masked=masked(last4),
        last4=last4,
        status=item.status,
        expires_at=item.expires_at,
    )


def _out(grant: Grant, member: Member | None, codes: list[GrantCodeOut], *, revealed: bool) -> GrantOut:
    return GrantOut(
        id=grant.id,
        ref=grant.ref,
        status=grant.status,
        product_id=grant.product_id,
        quantity=grant.quantity,
        member=GrantMemberOut(
            id=member.id,
            external_id=member.external_id,
            phone_masked=member.phone_masked,
            email=member.email,
            name=member.name,
        )
        if member
        else None,
        channel=grant.channel,
        contact_masked=grant.contact_masked,
        campaign_ref=grant.campaign_ref,
        source=grant.source,
        created_at=grant.created_at,
        delivered_at=grant.delivered_at,
        delivery_detail=grant.delivery_detail,
        voided_at=grant.voided_at,
        void_reason=grant.void_reason,
        codes=codes,
        revealed=revealed,
    )


async def grant_out(session: AsyncSession, kernel: Kernel, grant: Grant, *, reveal: bool = False) -> GrantOut:
    """The grant as the API shows it; plaintext numbers (+PIN) only with ``reveal`` (audited)."""
    just_created = session.info.get(_JUST_CREATED, {}).pop(grant.id, None)
    items: Sequence[GrantItem | NewItem]
    if just_created is not None:
        items, last4, member = just_created
        if reveal and items:  # the rows, to stamp revealed_at on them (in the order they were handed out)
            order = {item.id: n for n, item in enumerate(items)}
            items = sorted(await grant_items(session, grant.id), key=lambda row: order[row.id])
    else:
        items = await grant_items(session, grant.id)
        last4 = {}
        member = await get_scoped(session, Member, grant.member_id) if grant.member_id else None
    code_ids = list({i.code_id for i in items})
    codes: dict[uuid.UUID, Code] = {}
    if code_ids and (reveal or not all(c in last4 for c in code_ids)):
        codes = {c.id: c for c in (await session.execute(select(Code).where(Code.id.in_(code_ids)))).scalars()}
        last4 = {c.id: c.last4 for c in codes.values()}
    cipher = await kernel.keys.cipher(session) if reveal and items else None
    out_codes: list[GrantCodeOut] = []
    for item in items:
        entry = _code_out(item, last4[item.code_id])
        if cipher is not None and isinstance(item, GrantItem):
            code = codes[item.code_id]
            entry.number, entry.pin = unseal(cipher, code.digest, code.secret)
            item.revealed_at = item.revealed_at or utcnow()
        out_codes.append(entry)
    if cipher is not None:
        record(
            session,
            "grant.codes_revealed",
            "grant",
            grant.id,
            {"ref": grant.ref, "codes": sorted(str(c) for c in code_ids)},
        )
    return _out(grant, member, out_codes, revealed=cipher is not None)


async def grant_page(session: AsyncSession, rows: list[Grant], limit: int) -> GrantPage:
    """A page of :func:`list_grants` rows as the API shows them (codes masked), read in one query: each
    grant's items with their codes' last four characters and the grant's member, whatever the page's size."""
    limit = max(1, min(limit, MAX_PAGE))
    shown = rows[:limit]
    members: dict[uuid.UUID, Member | None] = {}
    codes: dict[uuid.UUID, list[GrantCodeOut]] = {g.id: [] for g in shown}
    if shown:
        stmt = (
            select(Grant.id, GrantItem, Code.last4, Member)
            .select_from(Grant)
            .outerjoin(GrantItem, (GrantItem.tenant_id == Grant.tenant_id) & (GrantItem.grant_id == Grant.id))
            .outerjoin(Code, (Code.tenant_id == GrantItem.tenant_id) & (Code.id == GrantItem.code_id))
            .outerjoin(Member, (Member.tenant_id == Grant.tenant_id) & (Member.id == Grant.member_id))
            .where(Grant.id.in_([g.id for g in shown]))
            .order_by(Grant.id, GrantItem.id)
        )
        for grant_id, item, last4, member in (await session.execute(stmt)).all():
            members[grant_id] = member
            if item is not None:
                codes[grant_id].append(_code_out(item, last4))
    items = [_out(g, members.get(g.id), codes[g.id], revealed=False) for g in shown]
    return GrantPage(items, items[-1].id if len(rows) > limit else None)


# --------------------------------------------------------------------------------------------- many at once


async def _members_for(
    session: AsyncSession, kernel: Kernel, requests: list[GrantRequest], source: str
) -> list[Member | DomainError]:
    """The member of each request (by phone digest, else by e-mail), created when unknown — set-based.

    The same rules as :func:`core.members.services.find_or_create_member` for a phone and/or an e-mail:
    the phone finds the member (its digest is unique); an e-mail alone finds the oldest member with that
    address; a found member's empty fields are filled in; unknown ones are inserted in one statement
    (``ON CONFLICT DO NOTHING``, then read back, so a concurrent creation is found, not duplicated).
    """
    batch = _Recipients.parse(await kernel.keys.cipher(session), requests)
    phone_name, phone_mail, mail_name = batch.first_details(requests)
    created: list[dict[str, Any]] = []
    # Phones first: an e-mail alone may then find a member just created with that address.
    await batch.read_phones(session, list(batch.sealed))
    missing = sorted(d for d in batch.sealed if d not in batch.by_digest)  # one insert order: no deadlock
    if missing:
        now = utcnow()
        values = [
            _member_values(source, now, batch.sealed[d], phone_mail.get(d), phone_name.get(d))
            for d in missing
        ]
        created += await _insert_members(session, values)
        await batch.read_phones(session, missing)
    mail_only = sorted(
        {batch.emails[i] or "" for i in range(len(requests)) if batch.phones[i] is None and batch.emails[i]}
    )
    if mail_only:
        await batch.read_mails(session, mail_only)
        unknown = [m for m in mail_only if m not in batch.by_mail]
        if unknown:
            now = utcnow()
            values = [_member_values(source, now, None, m, mail_name.get(m)) for m in unknown]
            created += await _insert_members(session, values)
            await batch.read_mails(session, unknown)
    for v in created:
        record(
            session,
            "member.created",
            "member",
            v["id"],
            {"source": source, "external_id": None, "phone": v["phone_masked"], "tags": []},
        )
    return [batch.member_of(i, data) for i, data in enumerate(requests)]


@dataclass
class _Recipients:
    """The recipients of a :func:`grant_many` batch, read from its requests, and the members found so far.

    Per request: its error (a bad phone or e-mail, none given), its phone as (E.164, digest), its e-mail.
    """

    out: list[Member | DomainError | None]
    phones: list[tuple[str, str] | None]
    emails: list[str | None]
    sealed: dict[str, tuple[str, str, bytes]]  # digest → sealed phone
    by_digest: dict[str, Member] = field(default_factory=dict)
    by_mail: dict[str, Member] = field(default_factory=dict)

    @classmethod
    def parse(cls, cipher: TenantCipher, requests: list[GrantRequest]) -> _Recipients:
        """Each request's phone (normalised, digested; each distinct phone sealed once) and e-mail."""
        batch = cls([None] * len(requests), [], [], {})
        for i, data in enumerate(requests):
            if data.member_id is not None or data.external_id is not None:
                raise ValueError("grant_many finds members by phone or e-mail only")
            try:
                e164 = normalize_phone(data.phone) if data.phone and data.phone.strip() else None
                mail = normalize_email(data.email) if data.email and data.email.strip() else None
            except DomainError as exc:
                batch.out[i] = exc
                batch.phones.append(None)
                batch.emails.append(None)
                continue
            if e164 is None and mail is None:
                batch.out[i] = ValidationFailed(
                    "Say who receives: member_id, external_id, phone or email",
                    "请指定接收人：会员、会员编号、手机号或邮箱",
                    code="recipient_required",
                )
            if e164 is not None:
                digest = digest_with(cipher, e164)
                if digest not in batch.sealed:
                    batch.sealed[digest] = seal_phone(cipher, e164)
                batch.phones.append((e164, digest))
            else:
                batch.phones.append(None)
            batch.emails.append(mail)
        return batch

    def first_details(
        self, requests: list[GrantRequest]
    ) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """The first name and e-mail given for each phone (by digest), and the first name for each e-mail
        given alone: what a member created for them starts with."""
        phone_name: dict[str, str] = {}
        phone_mail: dict[str, str] = {}
        mail_name: dict[str, str] = {}
        for j, d in enumerate(requests):
            name = (d.name or "").strip()[:120]
            ph = self.phones[j]
            if ph is not None:
                if name:
                    phone_name.setdefault(ph[1], name)
                if self.emails[j]:
                    phone_mail.setdefault(ph[1], self.emails[j] or "")
            elif self.emails[j] and name:
                mail_name.setdefault(self.emails[j] or "", name)
        return phone_name, phone_mail, mail_name

    async def read_phones(self, session: AsyncSession, digests: list[str]) -> None:
        """Find the members with these phone digests."""
        for start in range(0, len(digests), 500):
            part = digests[start : start + 500]
            for m in (await session.execute(select(Member).where(Member.phone_digest.in_(part)))).scalars():
                self.by_digest[m.phone_digest or ""] = m

    async def read_mails(self, session: AsyncSession, mails: list[str]) -> None:
        """Find the oldest member with each of these e-mails (unless one was found already)."""
        for start in range(0, len(mails), 500):
            part = mails[start : start + 500]
            found = await session.execute(select(Member).where(Member.email.in_(part)).order_by(Member.id))
            for m in found.scalars():
                self.by_mail.setdefault(m.email or "", m)

    def member_of(self, i: int, data: GrantRequest) -> Member | DomainError:
        """Request ``i``'s member (its empty e-mail and name filled in from the request), or its error."""
        error = self.out[i]
        if error is not None:
            return error
        ph = self.phones[i]
        m = self.by_digest.get(ph[1]) if ph is not None else self.by_mail.get(self.emails[i] or "")
        if m is None:  # a member deleted between the insert and the read: vanishingly rare
            return Conflict(
                "The member is being changed concurrently; try again",
                "会员正被并发修改，请重试",
                code="member_busy",
            )
        if self.emails[i] and not m.email:
            m.email = self.emails[i]
        if data.name and data.name.strip() and not m.name:
            m.name = data.name.strip()[:120]
        return m


def _member_values(
    source: str,
    now: dt.datetime,
    sealed: tuple[str, str, bytes] | None,
    email: str | None,
    name: str | None,
) -> dict[str, Any]:
    """A new member's row: by its sealed phone (digest, masked, ciphertext), or by e-mail alone."""
    digest, masked_phone, secret = sealed if sealed is not None else (None, None, None)
    return {
        "id": new_id(),
        "external_id": None,
        "phone_digest": digest,
        "phone_masked": masked_phone,
        "phone_secret": secret,
        "email": email,
        "name": name,
        "tags": [],
        "source": source,
        "status": "active",
        "created_at": now,
    }


@functools.lru_cache(maxsize=4)
def _members_insert(dialect: str) -> Any:
    table = Member.__table__
    upsert = pg_insert if dialect == "postgresql" else sqlite_insert
    return upsert(table).on_conflict_do_nothing().returning(table.c.id)


async def _insert_members(session: AsyncSession, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert members (one batched statement), skipping any whose phone is taken; returns those inserted."""
    connection = await session.connection()
    stmt = _members_insert(connection.dialect.name)
    inserted = set((await connection.execute(stmt, values)).scalars())
    return [v for v in values if v["id"] in inserted]


async def grant_many(
    session: AsyncSession,
    kernel: Kernel,
    requests: list[GrantRequest],
    *,
    source: str,
    purpose: str,
    client_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
) -> list[Grant | DomainError]:
    """Grant many requests in the caller's transaction, set-based; one result per request, in order.

    Each request gets what :func:`create_grant` would give it — the same member rules, risk gate, FEFO
    allocation, grant, items, audit event, ``grant.created`` event and delivery outbox row — or the
    :class:`DomainError` that :func:`create_grant` would have raised for it (a bad phone, a blocked member,
    ``risk_refused``, ``out_of_stock`` …); one request's error never undoes another's grant. Requests name
    their recipient by ``phone`` and/or ``email`` (not ``member_id``/``external_id``). Stock is taken per
    product in one pick for all its requests, handed out in request order; when it runs short, requests
    are served one by one in order until it is out (as a loop of single grants would). Any other
    exception (the database) propagates: the caller rolls back the whole batch.
    """
    results: list[Grant | DomainError | None] = [None] * len(requests)
    for i, data in enumerate(requests):
        try:
            _check(data)
        except DomainError as exc:
            results[i] = exc
    products = await find_products(session, (d.product_id for d in requests))
    members = await _members_for(session, kernel, requests, "grant")
    cipher = await kernel.keys.cipher(session)
    grants: dict[int, Grant] = {}
    tickets: dict[int, Any] = {}
    for i, data in enumerate(requests):
        if results[i] is not None:
            continue
        try:
            member, channel, contact, tickets[i] = await _admit(
                session, kernel, data, members[i], products, client_id
            )
        except DomainError as exc:
            results[i] = exc
            continue
        grants[i] = _new_grant(
            cipher, data, data.product_id, member.id, channel, contact, source, client_id, user_id
        )
    try:
        codes = await _allocate_many(session, requests, products, list(grants), purpose)
    except BaseException:  # boundary: cleanup only, re-raised: the counted units go back on any exit
        for ticket in tickets.values():
            await engine.give_back(kernel.settings, ticket)
        raise
    granted: list[tuple[Grant, Member, Product, list[AllocatedCode]]] = []
    written: list[int] = []
    for i, grant in grants.items():
        got = codes[i]
        if isinstance(got, DomainError):
            results[i] = got
            await engine.give_back(kernel.settings, tickets[i])
            continue
        recipient = members[i]
        assert isinstance(recipient, Member)  # _admit() above refused the request otherwise
        granted.append((grant, recipient, products[grant.product_id], got))
        written.append(i)
        results[i] = grant
    try:
        await _add_grants(session, granted, source, utcnow())  # one batched INSERT per table
        await session.flush()  # and one for the audit events
    except BaseException:  # boundary: cleanup only, re-raised: the counted units go back on any exit
        for i in written:
            await engine.give_back(kernel.settings, tickets[i])
        raise
    return [r for r in results if r is not None]


async def _admit(
    session: AsyncSession,
    kernel: Kernel,
    data: GrantRequest,
    member: Member | DomainError,
    products: dict[uuid.UUID, Product],
    client_id: uuid.UUID | None,
) -> tuple[Member, str | None, str | None, Any]:
    """One request of :func:`grant_many` before stock is taken: its member, delivery channel and contact,
    and the risk gate's ticket for it; the request's :class:`DomainError` when it is refused."""
    from core.risk import engine

    if isinstance(member, DomainError):
        raise member
    if data.product_id not in products:
        raise NotFound("Product not found", "权益商品不存在", code="product_not_found")
    if member.status != "active":
        raise Conflict("This member is blocked", "该会员已被停用", code="member_blocked")
    phone = normalize_phone(data.phone) if data.phone and data.phone.strip() else None
    email = normalize_email(data.email) if data.email and data.email.strip() else None
    channel, contact = await _contact(session, kernel, data, member, phone, email)
    subject = RiskSubject(member_id=member.id, phone_digest=member.phone_digest, client_id=client_id)
    ticket = await engine.admit(session, kernel.settings, "grant", subject, data.quantity)
    return member, channel, contact, ticket


async def _add_grants(
    session: AsyncSession,
    granted: list[tuple[Grant, Member, Product, list[AllocatedCode]]],
    source: str,
    now: dt.datetime,
) -> list[NewGrant]:
    """Write grants with their items, ``grant.created`` events and deliveries (:mod:`core.grants.writes`),
    and record each one's audit event; the written grants."""
    new: list[NewGrant] = []
    for grant, member, product, got in granted:
        items = _new_items(product, got, now)
        facts = {
            "ref": grant.ref,
            "product_id": str(product.id),
            "quantity": grant.quantity,
            "member_id": str(member.id),
            "channel": grant.channel,
            "campaign_ref": grant.campaign_ref,
            "source": source,
            "codes": [str(item.code_id) for item in items],
        }
        new.append(NewGrant(grant, items, facts, DELIVERY_ACTOR if grant.channel is not None else None))
    await write_grants(session, new, now)
    for n in new:
        record(session, CREATED_EVENT, "grant", n.grant.id, n.facts)
    return new


async def _allocate_many(
    session: AsyncSession,
    requests: list[GrantRequest],
    products: dict[uuid.UUID, Product],
    indexes: list[int],
    purpose: str,
) -> dict[int, list[AllocatedCode] | DomainError]:
    """Codes for each request index: per product one FEFO pick, dealt out in order; one by one when short."""
    out: dict[int, list[AllocatedCode] | DomainError] = {}
    groups: dict[uuid.UUID, list[int]] = {}
    for i in indexes:
        groups.setdefault(requests[i].product_id, []).append(i)
    for product_id in sorted(groups):  # one product order for every batch: locks taken in the same order
        product = products[product_id]
        group = groups[product_id]
        batches: list[list[int]] = [[]]
        units = 0
        for i in group:  # an allocation takes at most MAX_QUANTITY units
            if units + requests[i].quantity > MAX_QUANTITY and batches[-1]:
                batches.append([])
                units = 0
            batches[-1].append(i)
            units += requests[i].quantity
        short = product.kind not in ("code", "stored_value")  # bundles, reusable codes: one by one
        for batch in batches:
            if not short:
                total = sum(requests[i].quantity for i in batch)
                try:
                    async with session.begin_nested():
                        taken = await allocate(session, product_id, total, purpose, product=product)
                except OutOfStock:
                    short = True
                except DomainError as exc:  # inactive, not allocatable: the same for every request
                    for i in batch:
                        out[i] = exc
                    continue
                else:
                    at = 0
                    for i in batch:
                        out[i] = list(taken.codes[at : at + requests[i].quantity])
                        at += requests[i].quantity
                    continue
            empty = False
            for i in batch:
                if empty:  # nothing left: the rest of this product's requests are out of stock
                    wanted = requests[i].quantity
                    out[i] = OutOfStock(
                        f"Out of stock: {wanted} wanted, 0 available for {product.sku}",
                        f"库存不足：需要 {wanted} 个，{product.sku} 仅剩 0 个可用",
                        extra={"product_id": str(product.id), "requested": wanted, "available": 0},
                    )
                    continue
                try:
                    async with session.begin_nested():
                        one = await allocate(
                            session, product_id, requests[i].quantity, purpose, product=product
                        )
                    out[i] = list(one.codes)
                except OutOfStock as exc:
                    out[i] = exc
                    empty = not exc.extra.get("available")
                except DomainError as exc:
                    out[i] = exc
    return out
