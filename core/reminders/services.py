"""Expiry reminders (沉睡券): find held, unredeemed grant items that expire within the tenant's window, and
queue ONE reminder per member per run; every item is reminded at most once.

:func:`run_reminders` works a page of members at a time. In one transaction it takes the page's items with
a conditional ``UPDATE … SET reminded_at = now WHERE reminded_at IS NULL AND status = 'held' RETURNING …``
and writes one outbox message per member (payload: member id, item ids and channel — never the phone or
e-mail, which the send job decrypts just before delivery). On PostgreSQL the transaction first takes a
per-tenant advisory lock, so two runs at once are serialised: the second one finds the items reminded.
On SQLite (one writer) the conditional update alone guarantees it. Members with neither a phone nor an
e-mail are skipped and counted, and their items stay unreminded (a contact added later still gets one).

:func:`list_sent` pages through the reminded units (latest first) for the console, contacts masked.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict

import msgspec
import structlog
from sqlalchemy import ColumnElement, and_, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.catalog.models import Product
from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.ids import new_id
from core.db.paging import Page
from core.db.session import Database
from core.errors import FieldError, NotFound, ValidationFailed
from core.grants.models import Grant, GrantItem
from core.jobs import outbox
from core.members.models import Member
from core.reminders.models import DEFAULT_DAYS_BEFORE, ReminderSetting
from plugins import mask_recipient

log = structlog.get_logger("kaquan.reminders")

REMINDER_ACTOR = "send_expiry_reminder"
REMINDER_TEMPLATE = "expiry_reminder"
MAX_DAYS_BEFORE = 90
#: Members handled per transaction.
MEMBERS_PER_PAGE = 200


class ReminderSettingOut(msgspec.Struct):
    """Remind ``days_before`` days before expiry (1..90); ``enabled`` switches reminders off."""

    days_before: int
    enabled: bool


class ReminderSettingIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    days_before: int | None = None
    enabled: bool | None = None


class ReminderRun(msgspec.Struct, kw_only=True):
    """What one run did (counts only)."""

    members_reminded: int = 0
    items_reminded: int = 0
    members_without_contact: int = 0
    members_blocked: int = 0
    days_before: int = DEFAULT_DAYS_BEFORE
    enabled: bool = True


async def get_setting(session: AsyncSession) -> ReminderSettingOut:
    row = (await session.execute(select(ReminderSetting))).scalar_one_or_none()
    if row is None:
        return ReminderSettingOut(days_before=DEFAULT_DAYS_BEFORE, enabled=True)
    return ReminderSettingOut(days_before=row.days_before, enabled=row.enabled)


async def set_setting(session: AsyncSession, data: ReminderSettingIn) -> ReminderSettingOut:
    """Change the tenant's reminder window and/or switch; audited."""
    if data.days_before is not None and not 1 <= data.days_before <= MAX_DAYS_BEFORE:
        raise ValidationFailed(
            f"days_before must be between 1 and {MAX_DAYS_BEFORE}",
            f"提前提醒天数必须在 1 到 {MAX_DAYS_BEFORE} 之间",
            errors=[FieldError(field="days_before", message=f"1..{MAX_DAYS_BEFORE}", code="out_of_range")],
        )
    row = (await session.execute(select(ReminderSetting))).scalar_one_or_none()
    if row is None:
        row = ReminderSetting(days_before=DEFAULT_DAYS_BEFORE, enabled=True)
        session.add(row)
    if data.days_before is not None:
        row.days_before = data.days_before
    if data.enabled is not None:
        row.enabled = data.enabled
    await session.flush()
    record(
        session,
        "reminder_settings.updated",
        "reminder_settings",
        row.id,
        {"days_before": row.days_before, "enabled": row.enabled},
    )
    return ReminderSettingOut(days_before=row.days_before, enabled=row.enabled)


def _due(now: dt.datetime, horizon: dt.datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        GrantItem.status == "held",
        GrantItem.reminded_at.is_(None),
        GrantItem.member_id.is_not(None),
        GrantItem.expires_at.is_not(None),
        GrantItem.expires_at > now,
        GrantItem.expires_at <= horizon,
    )


async def _serialise(session: AsyncSession) -> None:
    """PostgreSQL: one reminder run per tenant at a time (released at commit)."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended('kaquan-expiry-reminders:' || :tid, 0))"),
            {"tid": str(require_tenant())},
        )


async def _remind_page(
    session: AsyncSession, now: dt.datetime, horizon: dt.datetime, after: uuid.UUID | None, run: ReminderRun
) -> uuid.UUID | None:
    """Remind the next page of members (ids after ``after``); returns the last member id seen, or None."""
    await _serialise(session)
    q = select(GrantItem.member_id).where(*_due(now, horizon)).distinct().order_by(GrantItem.member_id)
    if after is not None:
        q = q.where(GrantItem.member_id > after)
    member_ids = [m for m in (await session.execute(q.limit(MEMBERS_PER_PAGE))).scalars() if m is not None]
    if not member_ids:
        return None
    members = {
        m.id: m for m in (await session.execute(select(Member).where(Member.id.in_(member_ids)))).scalars()
    }
    channels: dict[uuid.UUID, str] = {}
    for mid in member_ids:
        member = members.get(mid)
        if member is None:
            continue
        if member.status != "active":
            run.members_blocked += 1
        elif member.phone_secret is not None:
            channels[mid] = "sms"
        elif member.email:
            channels[mid] = "email"
        else:
            run.members_without_contact += 1
    if channels:
        taken = (
            await session.execute(
                update(GrantItem)
                .where(*_due(now, horizon), GrantItem.member_id.in_(list(channels)))
                .values(reminded_at=now)
                .returning(GrantItem.id, GrantItem.member_id),
                execution_options={"synchronize_session": False},
            )
        ).all()
        per_member: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
        for item_id, member_id in taken:
            assert member_id is not None  # the update matched only items of members in ``channels``
            per_member[member_id].append(item_id)
        run_id = new_id()
        for member_id, item_ids in per_member.items():
            item_ids.sort()
            outbox.enqueue(
                session,
                REMINDER_ACTOR,
                {
                    "member_id": str(member_id),
                    "item_ids": [str(i) for i in item_ids],
                    "channel": channels[member_id],
                },
                business_key=f"{REMINDER_ACTOR}:{member_id}:{run_id}",
            )
            record(
                session,
                "grant_items.reminded",
                "member",
                member_id,
                {
                    "items": [str(i) for i in item_ids],
                    "channel": channels[member_id],
                    "days_before": run.days_before,
                },
            )
            run.members_reminded += 1
            run.items_reminded += len(item_ids)
    return member_ids[-1]


async def run_reminders(db: Database, *, now: dt.datetime | None = None) -> ReminderRun:
    """The periodic job's body: each page of members in its own transaction (see the module docstring)."""
    async with db.transaction() as session:
        setting = await get_setting(session)
    run = ReminderRun(days_before=setting.days_before, enabled=setting.enabled)
    if not setting.enabled:
        return run
    now = now or utcnow()
    horizon = now + dt.timedelta(days=setting.days_before)
    after: uuid.UUID | None = None
    while True:
        async with db.transaction() as session:
            after = await _remind_page(session, now, horizon, after, run)
        if after is None:
            break
    log.info("expiry_reminders_queued", **msgspec.to_builtins(run))
    return run


# --------------------------------------------------------------------------------------------- sent


class SentReminder(msgspec.Struct, kw_only=True):
    """One code unit a member was reminded of. ``contact`` is masked: the phone when the member has one
    (reminders go by SMS first), else the e-mail; empty when the member has neither any more."""

    item_id: uuid.UUID
    member_id: uuid.UUID | None
    member_name: str | None
    contact: str
    channel: str | None
    product_id: uuid.UUID
    sku: str
    product_name_zh: str
    product_name_en: str | None
    expires_at: dt.datetime | None
    reminded_at: dt.datetime
    status: str


class SentReminderPage(msgspec.Struct):
    items: list[SentReminder]
    next_cursor: uuid.UUID | None


async def list_sent(
    session: AsyncSession, *, after: uuid.UUID | None = None, limit: int = 50
) -> SentReminderPage:
    """Reminded code units, latest reminder first (one query: item, grant, product and member joined).

    ``after`` is the ``next_cursor`` of the previous page: the id of a reminded item of this tenant;
    any other id is a 404 (``reminder_not_found``).
    """
    q = (
        select(
            GrantItem.id,
            GrantItem.member_id,
            GrantItem.expires_at,
            GrantItem.reminded_at,
            GrantItem.status,
            Product.id.label("product_id"),
            Product.sku,
            Product.name_zh,
            Product.name_en,
            Member.name.label("member_name"),
            Member.phone_masked,
            Member.phone_secret.is_not(None).label("has_phone"),
            Member.email,
        )
        .join(Grant, and_(Grant.tenant_id == GrantItem.tenant_id, Grant.id == GrantItem.grant_id))
        .join(Product, and_(Product.tenant_id == Grant.tenant_id, Product.id == Grant.product_id))
        .outerjoin(Member, and_(Member.tenant_id == GrantItem.tenant_id, Member.id == GrantItem.member_id))
        .where(GrantItem.reminded_at.is_not(None))
        .order_by(GrantItem.reminded_at.desc(), GrantItem.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        mark = await session.scalar(
            select(GrantItem.reminded_at).where(GrantItem.id == after, GrantItem.reminded_at.is_not(None))
        )
        if mark is None:
            raise NotFound("Reminder not found", "提醒记录不存在", code="reminder_not_found")
        q = q.where(
            or_(
                GrantItem.reminded_at < mark,
                and_(GrantItem.reminded_at == mark, GrantItem.id < after),
            )
        )
    page = Page.cut((await session.execute(q)).all(), limit, lambda r: r.id)
    items: list[SentReminder] = []
    for r in page.items:
        if r.has_phone and r.phone_masked:
            contact, channel = r.phone_masked, "sms"
        elif r.email:
            contact, channel = mask_recipient(r.email), "email"
        else:
            contact, channel = "", None
        items.append(
            SentReminder(
                item_id=r.id,
                member_id=r.member_id,
                member_name=r.member_name,
                contact=contact,
                channel=channel,
                product_id=r.product_id,
                sku=r.sku,
                product_name_zh=r.name_zh,
                product_name_en=r.name_en,
                expires_at=r.expires_at,
                reminded_at=r.reminded_at,
                status=r.status,
            )
        )
    return SentReminderPage(items, page.next_cursor)
