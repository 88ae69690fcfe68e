"""Expiry-reminder jobs: the periodic sweep (``remind_expiring_codes``) and the per-member send.

The sweep is enqueued per tenant by the scheduler (see ``core.jobs.scheduler.PERIODIC``). The send job's
payload holds the member id, the item ids and the channel; the phone is decrypted (or the e-mail read) here,
just before delivery through the routed notifier. Idempotent on the outbox business key.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence

import structlog
from sqlalchemy import Row, select

from core.catalog.models import Product
from core.db.context import require_tenant
from core.expiry import expiry_text, zone
from core.grants.models import Grant, GrantItem
from core.jobs.context import current_env, current_message
from core.jobs.idempotency import run_once
from core.jobs.registry import job
from core.kernel import Kernel
from core.members.models import Member
from core.members.services import member_phone
from core.notifications.branding import branding, sms_text
from core.notifications.delivery import send
from core.notifications.templates import normalize_locale, render, template_params
from core.reminders.services import REMINDER_ACTOR, REMINDER_TEMPLATE, run_reminders
from plugins import Notification
from tenants.models import Tenant

log = structlog.get_logger("kaquan.reminders")


class ReminderDeliveryFailed(RuntimeError):
    """The notifier could not deliver now; dramatiq retries the job with backoff."""


@job("remind_expiring_codes", queue="maintenance", max_retries=5)
async def remind_expiring_codes() -> None:
    """Queue one reminder per member holding codes that expire within the tenant's window."""
    await run_reminders(current_env().db())


@job(REMINDER_ACTOR, queue="notifications", max_retries=8, min_backoff_ms=10_000)
async def send_expiry_reminder(member_id: str, item_ids: list[str], channel: str) -> None:
    """Render and deliver one member's reminder (items redeemed or transferred since are left out)."""
    env = current_env()
    message = current_message()
    tenant_id = require_tenant()
    key = message.idempotency_key if message else f"{REMINDER_ACTOR}:{member_id}:{','.join(item_ids)}"
    kernel = Kernel(settings=env.settings, db=env.db(), keys=env.keys)
    async with env.db().transaction() as session:
        if not await run_once(session, key, REMINDER_ACTOR):
            log.info("expiry_reminder_already_sent", reference=key)
            return
        tenant = await session.get(Tenant, tenant_id)
        member = (
            await session.execute(select(Member).where(Member.id == uuid.UUID(member_id)))
        ).scalar_one_or_none()
        if tenant is None or member is None:
            log.warning("expiry_reminder_skipped", reason="member_missing", member_id=member_id)
            return
        rows = (
            await session.execute(
                select(GrantItem.expires_at, Product.name_zh, Product.name_en)
                .join(Grant, (Grant.tenant_id == GrantItem.tenant_id) & (Grant.id == GrantItem.grant_id))
                .join(Product, (Product.tenant_id == Grant.tenant_id) & (Product.id == Grant.product_id))
                .where(
                    GrantItem.id.in_([uuid.UUID(i) for i in item_ids]),
                    GrantItem.status == "held",
                    GrantItem.member_id == member.id,
                )
            )
        ).all()
        if not rows:
            log.info("expiry_reminder_skipped", reason="nothing_held", member_id=member_id)
            return
        to = await member_phone(session, kernel, member) if channel == "sms" else member.email
        if not to:
            log.warning("expiry_reminder_skipped", reason="no_contact", member_id=member_id, channel=channel)
            return
        lang, subject, body, params = _reminder_text(tenant, member, rows)
        if channel == "sms":  # the tenant's signature and SMS text (the e-mail keeps the full template)
            body = sms_text(await branding(session, tenant.name), "expiry_reminder", params)
        notification = Notification(
            channel=channel,
            to=to,
            subject=subject,
            body=body,
            locale=lang,
            template=REMINDER_TEMPLATE,
            reference=key,
            params=params,
        )
        sent = await send(env, tenant_id, notification, session=session, items=len(rows))
        sent.raise_for_retry(ReminderDeliveryFailed)
        sent.log(log, "expiry_reminder")


def _reminder_text(
    tenant: Tenant, member: Member, rows: Sequence[Row]
) -> tuple[str, str, str, dict[str, str]]:
    """(locale, subject, body, template parameters) of the reminder in the tenant's language: how many
    codes, the first expiry (the tenant's day), each product's name and count."""
    lang = normalize_locale(tenant.locale)
    dates = [r.expires_at for r in rows if r.expires_at is not None]
    first = (expiry_text(min(dates), zone(tenant.timezone)) or "—") if dates else "—"
    names = Counter((r.name_en or r.name_zh) if lang == "en" else r.name_zh for r in rows)
    products = "\n".join(f"· {name} ×{n}" for name, n in sorted(names.items()))
    greeting = ((" " + member.name) if lang == "en" else member.name) if member.name else ""
    values = {
        "tenant_name": tenant.name,
        "count": len(rows),
        "expires_on": first,
        "products": products,
        "greeting": greeting,
    }
    subject, body = render(REMINDER_TEMPLATE, lang, values)
    return lang, subject, body, template_params(values)
