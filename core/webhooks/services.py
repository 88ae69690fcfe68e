"""Webhook rules, shared by the API, the console and the jobs.

- Subscriptions: the URL must be ``https://`` to a public host; private, loopback and link-local
  addresses (and ``http://`` to them) are accepted only when :func:`allow_private` (embedded mode or
  ``KAQUAN_WEBHOOK_ALLOW_PRIVATE``), and the host is resolved again before every POST (SSRF guard).
  The signing secret is generated here, encrypted under the tenant's key, and returned only on
  creation and rotation.
- Deliveries: :func:`fan_out` makes one row per (event, matching active subscription) and queues
  attempt 1; :func:`claim_attempt` takes attempt *n* with one conditional UPDATE (``status = pending
  and attempts = n - 1`` and no live lease), so a repeated or duplicated message never POSTs twice;
  :func:`record_attempt` stores the outcome and queues attempt *n + 1* after a backoff when the receiver
  failed with a network error, a 5xx, 408 or 429.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import structlog
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.crypto.envelope import TenantCipher
from core.db.base import utcnow
from core.db.ids import new_id
from core.db.paging import keyset_page
from core.db.results import rowcount
from core.errors import Conflict, FieldError, NotFound, QuotaExceeded, ValidationFailed
from core.events.models import Event, WebhookSubscription
from core.events.services import EVENT_TYPES
from core.events.services import FANOUT_ACTOR as FANOUT_ACTOR  # the fan-out job is written and run here
from core.jobs.outbox import enqueue
from core.settings import Settings
from core.webhooks import signing
from core.webhooks.models import DELIVERY_STATUSES, WebhookDelivery
from core.webhooks.schemas import (
    DeliveryOut,
    DeliveryPage,
    SecretRotated,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookPage,
    WebhookUpdate,
)

log = structlog.get_logger("kaquan.webhooks")

ALL_EVENTS = "*"
MAX_SUBSCRIPTIONS = 20
MAX_PAGE = 200
#: Attempts before a delivery gives up (a resend grants this many more).
MAX_ATTEMPTS = 8
#: Wait after failed attempt n (1-based) before attempt n + 1: 30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h.
BACKOFF: tuple[dt.timedelta, ...] = (
    dt.timedelta(seconds=30),
    dt.timedelta(minutes=2),
    dt.timedelta(minutes=10),
    dt.timedelta(minutes=30),
    dt.timedelta(hours=1),
    dt.timedelta(hours=3),
    dt.timedelta(hours=6),
)
#: A ``Retry-After`` longer than this is capped.
MAX_RETRY_AFTER = dt.timedelta(hours=6)
REQUEST_TIMEOUT_SECONDS = 10.0
#: How long a claimed attempt is held; after it the sweeper may start the next attempt (a crashed worker).
LEASE = dt.timedelta(seconds=60)
#: A pending delivery this much past its due time (its message was lost) is queued again by the sweeper.
SWEEP_GRACE = dt.timedelta(minutes=5)
SNIPPET_CHARS = 500
ERROR_CHARS = 500
RETRY_STATUSES = frozenset({408, 429})
DELIVER_ACTOR = "deliver_webhook"
USER_AGENT = "kaquan-webhooks/1"


# --- URL policy --------------------------------------------------------------------------------------------


class UrlRefused(ValidationFailed):
    code = "webhook_url_refused"


def allow_private(settings: Settings) -> bool:
    """Private and loopback targets (and ``http://`` to them) are for development: embedded mode or the flag."""
    return settings.webhook_allow_private or not settings.redis_url


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _refuse(en: str, zh: str) -> UrlRefused:
    return UrlRefused(en, zh, errors=[FieldError(field="url", message=en, code="url_refused")])


def check_url(url: str, *, private_ok: bool) -> str:
    """The cleaned URL, or :class:`UrlRefused` (not http(s), credentials, https missing, private host)."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port  # a malformed port raises here
    except ValueError:
        raise _refuse("The URL is not valid", "URL 格式不正确") from None
    if parts.scheme not in ("http", "https") or not host:
        raise _refuse(
            "The URL must start with https:// and name a host", "URL 必须以 https:// 开头并包含主机名"
        )
    if parts.username is not None or parts.password is not None:
        raise _refuse("Put no user name or password in the URL", "URL 中不能包含用户名或密码")
    if parts.fragment:
        raise _refuse("The URL must not have a #fragment", "URL 不能包含 # 片段")
    try:
        literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    local = (
        host == "localhost"
        or host.endswith(".localhost")
        or (literal is not None and not _is_public(literal))
    )
    if local and not private_ok:
        raise _refuse(
            "Private, loopback and link-local addresses are not allowed as webhook targets",
            "不允许将内网、回环或链路本地地址作为 Webhook 地址",
        )
    if parts.scheme == "http" and not local:
        raise _refuse("Webhook URLs must use https://", "Webhook 地址必须使用 https://")
    return url


async def check_resolved(url: str, *, private_ok: bool) -> None:
    """Resolve the URL's host now and refuse it if any address is not public (DNS may have changed)."""
    if private_ok:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if not _is_public(ipaddress.ip_address(address)):
            raise _refuse(f"The host {host} resolves to a private address", f"主机 {host} 解析到内网地址")


def clean_events(events: list[str]) -> list[str]:
    """Known event types, sorted and unique; ``["*"]`` when ``*`` is among them."""
    cleaned = sorted({e.strip() for e in events if e.strip()})
    if not cleaned:
        raise ValidationFailed(
            "Choose at least one event type (or * for all)",
            "请至少选择一种事件类型（或 * 表示全部）",
            errors=[FieldError(field="events", message="empty", code="required")],
        )
    if ALL_EVENTS in cleaned:
        return [ALL_EVENTS]
    unknown = [e for e in cleaned if e not in EVENT_TYPES]
    if unknown:
        raise ValidationFailed(
            f"Unknown event types: {', '.join(unknown)}",
            f"未知事件类型：{', '.join(unknown)}",
            errors=[FieldError(field="events", message="unknown event type", code="unknown_event_type")],
        )
    return cleaned


def matches(subscription: WebhookSubscription, event_type: str) -> bool:
    return ALL_EVENTS in subscription.events or event_type in subscription.events


# --- subscriptions -----------------------------------------------------------------------------------------


def _aad(subscription_id: uuid.UUID) -> bytes:
    return f"webhook-secret:{subscription_id}".encode()


def seal_secret(cipher: TenantCipher, subscription_id: uuid.UUID, secret: str) -> bytes:
    return cipher.encrypt(secret.encode(), aad=_aad(subscription_id))


def open_secret(cipher: TenantCipher, subscription: WebhookSubscription) -> str:
    return cipher.decrypt(subscription.secret, aad=_aad(subscription.id)).decode()


def subscription_out(s: WebhookSubscription) -> WebhookOut:
    return WebhookOut(s.id, s.url, list(s.events), s.active, s.description, s.created_at, s.updated_at)


def delivery_out(d: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        d.id,
        d.subscription_id,
        d.event_id,
        d.event_type,
        d.status,
        d.attempts,
        d.last_status_code,
        d.last_error,
        d.response_snippet,
        d.next_attempt_at,
        d.last_attempt_at,
        d.completed_at,
        d.created_at,
    )


async def get_subscription(session: AsyncSession, subscription_id: uuid.UUID) -> WebhookSubscription:
    row = await session.scalar(select(WebhookSubscription).where(WebhookSubscription.id == subscription_id))
    if row is None:
        raise NotFound("No such webhook subscription", "未找到该 Webhook 订阅", code="webhook_not_found")
    return row


async def create_subscription(
    session: AsyncSession, cipher: TenantCipher, data: WebhookCreate, *, private_ok: bool
) -> WebhookCreated:
    """Create a subscription with a new signing secret (returned here only)."""
    url = check_url(data.url, private_ok=private_ok)
    events = clean_events(data.events)
    count = await session.scalar(select(func.count()).select_from(WebhookSubscription))
    if (count or 0) >= MAX_SUBSCRIPTIONS:
        raise QuotaExceeded(
            f"A tenant can have at most {MAX_SUBSCRIPTIONS} webhook subscriptions",
            f"每个租户最多 {MAX_SUBSCRIPTIONS} 个 Webhook 订阅",
            code="webhook_limit",
        )
    secret = signing.generate_secret()
    sid = new_id()
    row = WebhookSubscription(
        id=sid,
        url=url,
        events=events,
        secret=seal_secret(cipher, sid, secret),
        active=data.active,
        description=data.description.strip(),
        created_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    record(session, "webhook.created", "webhook", sid, {"url": url, "events": events, "active": data.active})
    return WebhookCreated(subscription_out(row), secret)


async def update_subscription(
    session: AsyncSession, subscription_id: uuid.UUID, data: WebhookUpdate, *, private_ok: bool
) -> WebhookOut:
    """Change the fields sent; the secret changes only through :func:`rotate_secret`."""
    row = await get_subscription(session, subscription_id)
    changed: dict[str, Any] = {}
    if not isinstance(data.url, msgspec.UnsetType):
        changed["url"] = row.url = check_url(data.url, private_ok=private_ok)
    if not isinstance(data.events, msgspec.UnsetType):
        changed["events"] = row.events = clean_events(data.events)
    if not isinstance(data.description, msgspec.UnsetType):
        changed["description"] = row.description = data.description.strip()
    if not isinstance(data.active, msgspec.UnsetType):
        changed["active"] = row.active = data.active
    if changed:
        row.updated_at = utcnow()
        record(session, "webhook.updated", "webhook", row.id, changed)
    await session.flush()
    return subscription_out(row)


async def rotate_secret(
    session: AsyncSession, cipher: TenantCipher, subscription_id: uuid.UUID
) -> SecretRotated:
    """A new signing secret (returned here only); attempts from now on are signed with it."""
    row = await get_subscription(session, subscription_id)
    secret = signing.generate_secret()
    row.secret = seal_secret(cipher, row.id, secret)
    row.updated_at = utcnow()
    record(session, "webhook.secret_rotated", "webhook", row.id, {})
    await session.flush()
    return SecretRotated(row.id, secret)


async def delete_subscription(session: AsyncSession, subscription_id: uuid.UUID) -> None:
    """Delete a subscription and its delivery log; queued attempts then find nothing to do."""
    row = await get_subscription(session, subscription_id)
    await session.execute(
        delete(WebhookDelivery)
        .where(WebhookDelivery.subscription_id == row.id)
        .execution_options(synchronize_session=False)
    )
    record(session, "webhook.deleted", "webhook", row.id, {"url": row.url})
    await session.delete(row)
    await session.flush()


async def list_subscriptions(session: AsyncSession, cursor: uuid.UUID | None, limit: int) -> WebhookPage:
    """Newest first; pass ``next_cursor`` back as ``cursor``."""
    q = select(WebhookSubscription)
    page = await keyset_page(session, q, WebhookSubscription.id, cursor=cursor, limit=limit)
    return WebhookPage([subscription_out(r) for r in page.items], page.next_cursor)


# --- delivery log ------------------------------------------------------------------------------------------


async def get_delivery(session: AsyncSession, delivery_id: uuid.UUID) -> WebhookDelivery:
    row = await session.scalar(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id))
    if row is None:
        raise NotFound(
            "No such webhook delivery", "未找到该 Webhook 投递记录", code="webhook_delivery_not_found"
        )
    return row


async def list_deliveries(
    session: AsyncSession,
    subscription_id: uuid.UUID,
    *,
    status: str | None = None,
    cursor: uuid.UUID | None = None,
    limit: int = 50,
) -> DeliveryPage:
    """A subscription's deliveries, newest first, optionally of one status."""
    await get_subscription(session, subscription_id)
    q = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
    if status is not None:
        if status not in DELIVERY_STATUSES:
            raise ValidationFailed(
                f"Unknown delivery status {status!r}",
                f"未知投递状态 {status!r}",
                errors=[FieldError(field="status", message=f"one of {', '.join(DELIVERY_STATUSES)}")],
            )
        q = q.where(WebhookDelivery.status == status)
    page = await keyset_page(session, q, WebhookDelivery.id, cursor=cursor, limit=limit)
    return DeliveryPage([delivery_out(r) for r in page.items], page.next_cursor)


def _queue_attempt(
    session: AsyncSession, delivery_id: uuid.UUID, attempt: int, key: str, delay: dt.timedelta | None = None
) -> None:
    enqueue(
        session,
        DELIVER_ACTOR,
        {"delivery_id": str(delivery_id), "attempt": attempt},
        business_key=key,
        delay=delay,
    )


async def resend(session: AsyncSession, delivery_id: uuid.UUID) -> DeliveryOut:
    """Send a finished delivery again now (with a fresh budget of attempts)."""
    row = await get_delivery(session, delivery_id)
    if row.status == "pending":
        raise Conflict(
            "This delivery is still being attempted", "该投递仍在重试中", code="webhook_delivery_pending"
        )
    subscription = await get_subscription(session, row.subscription_id)
    if not subscription.active:
        raise Conflict(
            "The subscription is inactive; activate it first",
            "该订阅已停用，请先启用",
            code="webhook_inactive",
        )
    now = utcnow()
    attempt = row.attempts + 1
    row.status, row.completed_at, row.locked_until = "pending", None, None
    row.next_attempt_at = now
    row.attempt_limit = row.attempts + MAX_ATTEMPTS
    _queue_attempt(session, row.id, attempt, f"webhook:{row.id}:{attempt}:resend:{new_id().hex[:12]}")
    record(
        session,
        "webhook.delivery_resent",
        "webhook_delivery",
        row.id,
        {"subscription_id": str(row.subscription_id), "event_id": str(row.event_id), "attempt": attempt},
    )
    await session.flush()
    return delivery_out(row)


# --- fan-out and attempts (jobs) ---------------------------------------------------------------------------


async def fan_out(session: AsyncSession, event_id: uuid.UUID) -> int:
    """Create the deliveries of one event (to matching active subscriptions that existed when it happened)
    and queue their first attempts; repeated calls add nothing. Returns how many were created."""
    event = await session.scalar(select(Event).where(Event.id == event_id))
    if event is None:
        return 0
    subs = (
        await session.execute(select(WebhookSubscription).where(WebhookSubscription.active.is_(True)))
    ).scalars()
    targets = [s for s in subs if matches(s, event.type) and s.created_at <= event.created_at]
    if not targets:
        return 0
    done = set(
        (
            await session.execute(
                select(WebhookDelivery.subscription_id).where(WebhookDelivery.event_id == event.id)
            )
        ).scalars()
    )
    now, created = utcnow(), 0
    for s in targets:
        if s.id in done:
            continue
        delivery = WebhookDelivery(
            id=new_id(),
            subscription_id=s.id,
            event_id=event.id,
            event_type=event.type,
            attempt_limit=MAX_ATTEMPTS,
            next_attempt_at=now,
        )
        session.add(delivery)
        _queue_attempt(session, delivery.id, 1, f"webhook:{delivery.id}:1")
        created += 1
    await session.flush()
    return created


class AttemptPlan(msgspec.Struct, frozen=True):
    """A claimed attempt: what to POST where. Lives in memory only (it holds the secret)."""

    delivery_id: uuid.UUID
    event_id: uuid.UUID
    attempt: int
    url: str
    body: bytes
    secret: str


class Outcome(msgspec.Struct, frozen=True):
    """What the receiver did with one attempt."""

    success: bool
    retry: bool
    status_code: int | None = None
    error: str | None = None
    snippet: str | None = None
    retry_after: dt.timedelta | None = None


def event_body(event: Event) -> bytes:
    """The JSON POSTed for an event (the same bytes on every attempt)."""
    return msgspec.json.encode(
        {
            "id": str(event.id),
            "type": event.type,
            "created_at": event.created_at.astimezone(dt.UTC).isoformat(),
            "object_id": event.object_id,
            "data": event.data,
        }
    )


async def claim_attempt(
    session: AsyncSession, cipher: TenantCipher, delivery_id: uuid.UUID, attempt: int
) -> AttemptPlan | None:
    """Take attempt ``attempt`` of a delivery, or ``None`` when it is finished, already taken or unknown.

    One conditional UPDATE decides, so of two copies of one message exactly one gets the attempt.
    """
    now = utcnow()
    lease = now + LEASE
    result = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == "pending",
            WebhookDelivery.attempts == attempt - 1,
            or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now),
        )
        .values(attempts=attempt, locked_until=lease, last_attempt_at=now, next_attempt_at=lease)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        log.info("webhook_attempt_skipped", delivery_id=str(delivery_id), attempt=attempt)
        return None
    delivery = await get_delivery(session, delivery_id)
    subscription = await session.scalar(
        select(WebhookSubscription).where(WebhookSubscription.id == delivery.subscription_id)
    )
    event = await session.scalar(select(Event).where(Event.id == delivery.event_id))
    if subscription is None or event is None or not subscription.active:
        delivery.status, delivery.completed_at = "failed", now
        delivery.locked_until = delivery.next_attempt_at = None
        delivery.last_error = (
            "subscription is inactive" if subscription is not None else "subscription deleted"
        )
        return None
    return AttemptPlan(
        delivery.id, event.id, attempt, subscription.url, event_body(event), open_secret(cipher, subscription)
    )


def _retry_after(value: str | None) -> dt.timedelta | None:
    if value and value.strip().isdigit():
        return min(dt.timedelta(seconds=int(value.strip())), MAX_RETRY_AFTER)
    return None


async def post(plan: AttemptPlan, *, private_ok: bool, client: httpx.AsyncClient | None = None) -> Outcome:
    """POST the signed event once and classify the answer (2xx ok; network, 5xx, 408, 429 retry; else fail)."""
    try:
        await check_resolved(plan.url, private_ok=private_ok)
    except UrlRefused as exc:
        return Outcome(False, False, error=exc.en[:ERROR_CHARS])
    except OSError as exc:
        return Outcome(False, True, error=f"DNS: {type(exc).__name__}: {exc}"[:ERROR_CHARS])
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signing.EVENT_ID_HEADER: str(plan.event_id),
        signing.DELIVERY_ID_HEADER: str(plan.delivery_id),
        "Kaquan-Attempt": str(plan.attempt),
        signing.SIGNATURE_HEADER: signing.signature_header(plan.secret, plan.body),
    }
    own = client is None
    http = client or httpx.AsyncClient(
        timeout=REQUEST_TIMEOUT_SECONDS, follow_redirects=False, trust_env=False
    )
    try:
        async with http.stream("POST", plan.url, content=plan.body, headers=headers) as response:
            raw = b""
            async for chunk in response.aiter_raw():
                raw += chunk
                if len(raw) >= SNIPPET_CHARS * 4:
                    break
            snippet = raw.decode("utf-8", "replace")[:SNIPPET_CHARS]
            code = response.status_code
            retry_after = _retry_after(response.headers.get("retry-after"))
    except httpx.HTTPError as exc:
        return Outcome(False, True, error=f"{type(exc).__name__}: {exc}"[:ERROR_CHARS])
    finally:
        if own:
            await http.aclose()
    if 200 <= code < 300:
        return Outcome(True, False, code, None, snippet)
    retry = code >= 500 or code in RETRY_STATUSES
    return Outcome(False, retry, code, f"HTTP {code}", snippet, retry_after if retry else None)


def backoff(attempt: int) -> dt.timedelta:
    """The wait after failed attempt ``attempt``."""
    return BACKOFF[min(max(attempt, 1), len(BACKOFF)) - 1]


async def record_attempt(
    session: AsyncSession, plan: AttemptPlan, outcome: Outcome
) -> WebhookDelivery | None:
    """Store an attempt's outcome; queue the next attempt after a backoff when it should be retried."""
    delivery = await session.scalar(
        select(WebhookDelivery).where(WebhookDelivery.id == plan.delivery_id).with_for_update()
    )
    if delivery is None or delivery.status != "pending" or delivery.attempts != plan.attempt:
        return None
    now = utcnow()
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    delivery.response_snippet = outcome.snippet
    delivery.locked_until = None
    if outcome.success:
        delivery.status, delivery.completed_at, delivery.next_attempt_at = "succeeded", now, None
    elif outcome.retry and delivery.attempts < delivery.attempt_limit:
        wait = max(backoff(delivery.attempts), outcome.retry_after or dt.timedelta())
        delivery.next_attempt_at = now + wait
        nxt = delivery.attempts + 1
        _queue_attempt(session, delivery.id, nxt, f"webhook:{delivery.id}:{nxt}", delay=wait)
    else:
        delivery.status = "gave_up" if outcome.retry else "failed"
        delivery.completed_at, delivery.next_attempt_at = now, None
        record(
            session,
            f"webhook.delivery_{delivery.status}",
            "webhook_delivery",
            delivery.id,
            {
                "subscription_id": str(delivery.subscription_id),
                "event_id": str(delivery.event_id),
                "attempts": delivery.attempts,
                "status_code": outcome.status_code,
            },
        )
    log.info(
        "webhook_attempt",
        delivery_id=str(delivery.id),
        attempt=plan.attempt,
        status=delivery.status,
        status_code=outcome.status_code,
    )
    await session.flush()
    return delivery


async def requeue_stalled(session: AsyncSession, now: dt.datetime | None = None, limit: int = 500) -> int:
    """Queue the next attempt of pending deliveries well past due with no live lease (a lost message or a
    crashed worker). Duplicates are harmless: :func:`claim_attempt` lets one copy through."""
    now = now or utcnow()
    rows = (
        (
            await session.execute(
                select(WebhookDelivery)
                .where(
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= now - SWEEP_GRACE,
                    or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now),
                )
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    stamp = now.strftime("%Y%m%dT%H%M%S")
    for row in rows:
        attempt = row.attempts + 1
        _queue_attempt(session, row.id, attempt, f"webhook:{row.id}:{attempt}:sweep:{stamp}")
        row.next_attempt_at = now
    await session.flush()
    return len(rows)
