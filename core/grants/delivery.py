"""``deliver_grant``: the outbox job that sends a grant's codes to its contact through a notifier.

The payload is only the grant id: the contact (encrypted on the grant) and the codes (sealed in the
vault) are read and unsealed here, just before rendering, so neither travels or rests in the broker.
Delivery happens outside the database transaction, between two commits: the attempt (``sending``, with the
grant's stable idempotency key) before the send, the outcome after it (see :func:`deliver_grant`), so a
retry never sends a second, different message for one grant. An accepted delivery marks the grant ``delivered`` (event ``grant.delivered``); a
rejected one, or a failed one once retries are exhausted, marks it ``delivery_failed`` (event
``grant.delivery_failed``); a retryable failure before that raises, and dramatiq retries with backoff.
A grant voided meanwhile is not sent.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select

from core.catalog.models import Product
from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.session import get_scoped
from core.expiry import expiry_text, zone
from core.grants.lifecycle import awaiting_delivery
from core.grants.models import Grant, GrantDelivery, GrantItem
from core.grants.services import DELIVERY_ACTOR, get_grant, mark_delivered, mark_delivery_failed, open_contact
from core.inventory.models import Code
from core.inventory.vault import unseal
from core.jobs.context import current_env, current_message
from core.jobs.idempotency import already_done, run_once
from core.jobs.registry import job
from core.members.models import Member
from core.notifications.delivery import deliver
from core.notifications.templates import normalize_locale, render, template_params
from plugins import DeliveryResult, Notification, mask_recipient
from tenants.models import Tenant

log = structlog.get_logger("kaquan.grants")
MAX_RETRIES = 8
TEMPLATE = "grant_codes"


class GrantDeliveryFailed(RuntimeError):
    """The notifier could not deliver now; dramatiq retries the job with backoff."""


def _code_lines(pairs: list[tuple[str, str | None]], lang: str) -> str:
    counts = Counter(pairs)
    lines = []
    for (number, pin), n in counts.items():
        if lang == "en":
            line = f"Card no.: {number}" + (f"  PIN: {pin}" if pin else "")
            line += f"  (x{n})" if n > 1 else ""
        else:
            line = f"卡号：{number}" + (f"  卡密：{pin}" if pin else "")
            line += f"（{n} 次）" if n > 1 else ""
        lines.append(line)
    return "\n".join(lines)


def _validity(expiries: list[dt.datetime | None], timezone: str, lang: str) -> str:
    dates = [e for e in expiries if e is not None]
    if not dates:
        return "no expiry" if lang == "en" else "长期有效"
    first = expiry_text(min(dates), zone(timezone))
    return f"through {first}" if lang == "en" else f"至 {first}"


async def render_grant_message(
    session: Any, keys: Any, grant: Grant, tenant: Tenant
) -> tuple[str, str, str, dict[str, str]]:
    """(locale, subject, body, template parameters) of the grant's message with the codes in plaintext
    (never log it)."""
    lang = normalize_locale(tenant.locale)
    product = await get_scoped(session, Product, grant.product_id)
    assert product is not None  # a grant's product is a composite foreign key: it exists
    items = list(
        (
            await session.execute(
                select(GrantItem)
                # a unit whose code was voided in the inventory before the send is left out
                .where(GrantItem.grant_id == grant.id, GrantItem.status != "voided")
                .order_by(GrantItem.id)
            )
        ).scalars()
    )
    codes = {
        c.id: c
        for c in (
            await session.execute(select(Code).where(Code.id.in_([i.code_id for i in items])))
        ).scalars()
    }
    cipher = await keys.cipher(session)
    pairs = [unseal(cipher, codes[i.code_id].digest, codes[i.code_id].secret) for i in items]
    member = await get_scoped(session, Member, grant.member_id) if grant.member_id else None
    name = (product.name_en or product.name_zh) if lang == "en" else product.name_zh
    greeting = (" " + member.name if lang == "en" else member.name) if member and member.name else ""
    values = {
        "tenant_name": tenant.name,
        "product_name": name,
        "codes": _code_lines(pairs, lang),
        "validity": _validity([i.expires_at for i in items], tenant.timezone, lang),
        "usage_rules": product.usage_rules.strip() or "—",
        "greeting": greeting,
    }
    subject, body = render(TEMPLATE, lang, values)
    return lang, subject, body, template_params(values)


def delivery_key(grant_id: uuid.UUID) -> str:
    """The stable idempotency key of a grant's delivery (also its outbox business key)."""
    return f"{DELIVERY_ACTOR}:{grant_id}"


async def _attempt(session: Any, grant_id: uuid.UUID) -> GrantDelivery | None:
    query = select(GrantDelivery).where(GrantDelivery.grant_id == grant_id)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def _record_failed_attempt(env: Any, gid: uuid.UUID, connector_id: str, detail: str) -> None:
    """The provider said the message did not go out: ``sending`` → ``failed`` (the retry sends again)."""
    async with env.db().transaction() as session:
        attempt = await _attempt(session, gid)
        if attempt is not None and attempt.status == "sending":
            attempt.status, attempt.connector, attempt.detail = "failed", connector_id, detail[:500]


@dataclass(frozen=True)
class _Sending:
    """An attempt committed as ``sending``: the message to send and what the log says about it."""

    to: str
    channel: str
    ref: str
    lang: str
    subject: str
    body: str
    resend: bool
    attempts: int
    params: dict[str, str]


async def _start_attempt(env: Any, tenant_id: uuid.UUID, grant_id: str, key: str) -> _Sending | None:
    """Commit the grant's attempt as ``sending`` (a new one, or the next try of a crashed or failed one) and
    render its message; None when there is nothing to send (done, sent, rejected, or no longer awaited)."""
    gid = uuid.UUID(grant_id)
    async with env.db().transaction() as session:
        if await already_done(session, key):
            log.info("grant_delivery_already_done", grant_id=grant_id)
            return None
        grant = await get_grant(session, gid)
        if not awaiting_delivery(grant.status, grant.channel, grant.delivered_at):
            log.info("grant_delivery_skipped", grant_id=grant_id, status=grant.status)
            return None
        attempt = await _attempt(session, gid)
        if attempt is not None and attempt.status in ("sent", "rejected"):
            log.info("grant_delivery_skipped", grant_id=grant_id, send_status=attempt.status)
            return None
        tenant = await session.get(Tenant, tenant_id)
        if tenant is None:
            raise LookupError(f"tenant {tenant_id} not found")
        to = open_contact(await env.keys.cipher(session), grant) or ""
        lang, subject, body, params = await render_grant_message(session, env.keys, grant, tenant)
        channel, ref = grant.channel, grant.ref
        assert channel is not None  # awaiting_delivery() above: a grant without a channel is not sent
        resend = attempt is not None
        if attempt is None:
            attempt = GrantDelivery(grant_id=gid, idempotency_key=key, attempts=0)
            session.add(attempt)
        attempt.status, attempt.attempts, attempt.attempted_at = "sending", attempt.attempts + 1, utcnow()
        attempts = attempt.attempts
    return _Sending(to, channel, ref, lang, subject, body, resend, attempts, params)


@job(DELIVERY_ACTOR, queue="notifications", max_retries=MAX_RETRIES, min_backoff_ms=10_000)
async def deliver_grant(grant_id: str) -> None:
    """Send grant ``grant_id``'s codes to its contact once, and record the outcome on the grant.

    Before the notifier is called, the attempt is committed as ``sending`` (table ``grant_deliveries``)
    under the grant's stable idempotency key :func:`delivery_key`, passed to the notifier as
    ``Notification.reference``. Whatever the job system redelivers, a retry reads that state first:
    ``sent`` (or a grant no longer ``created``) sends nothing; ``sending`` (a crashed attempt, or the
    commit after the send failed) or ``failed`` sends again with the same key, so the provider
    dedupes. The log says ``recorded: true`` only after the outcome has committed.
    """
    env = current_env()
    message = current_message()
    tenant_id = require_tenant()
    gid = uuid.UUID(grant_id)
    key = delivery_key(gid)
    sending = await _start_attempt(env, tenant_id, grant_id, key)
    if sending is None:
        return
    to, channel, ref = sending.to, sending.channel, sending.ref
    resend, attempts = sending.resend, sending.attempts
    # The attempt is committed: a retry after a crash from here on knows a message may have gone out.
    notification = Notification(
        channel=channel,
        to=to,
        subject=sending.subject,
        body=sending.body,
        locale=sending.lang,
        template=TEMPLATE,
        reference=key,
        params=sending.params,
    )
    try:
        connector_id, result = await deliver(env, tenant_id, notification)
    except Exception as exc:  # boundary: notifier plugin call; a broken connector is a retryable failure
        connector_id = "notifier"
        result = DeliveryResult(
            status="failed", detail=f"notifier error: {type(exc).__name__}", retryable=True
        )
    fields = {
        "grant": ref,
        "connector": connector_id,
        "channel": channel,
        "to": mask_recipient(to),
        "status": result.status,
        "attempt": attempts,
        "resend": resend,
    }
    retries = message.retries if message else MAX_RETRIES
    if not result.accepted and result.retryable and retries < MAX_RETRIES:
        await _record_failed_attempt(env, gid, connector_id, result.detail or result.status)
        log.warning("grant_delivery_retry", detail=result.detail, retries=retries, **fields)
        raise GrantDeliveryFailed(f"{connector_id}: {result.detail}")
    async with env.db().transaction() as session:
        if not await run_once(session, key, DELIVERY_ACTOR):
            return
        attempt = await _attempt(session, gid)
        if attempt is not None:
            attempt.connector, attempt.finished_at = connector_id, utcnow()
            attempt.provider_message_id = (result.provider_message_id or "")[:200] or None
            attempt.detail = (result.detail or "")[:500] or None
            attempt.status = "sent" if result.accepted else ("rejected" if not result.retryable else "failed")
        if result.accepted:
            moved = await mark_delivered(session, gid, connector_id)
        else:
            moved = await mark_delivery_failed(session, gid, connector_id, result.detail or result.status)
    # Only now is the outcome committed.
    if result.accepted:
        log.info("grant_delivered", recorded=moved, **fields)
    else:
        log.warning("grant_delivery_failed", detail=result.detail, recorded=moved, **fields)
