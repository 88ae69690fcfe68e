"""The public callback route's service: ``POST /channels/{account}/callback`` (no login).

1. The account's tenant comes from the platform table ``connector_account_routes`` (read under a named
   cross-tenant bypass); an unknown account is ``404`` and nothing is stored.
2. In that tenant's context the account is bound (:func:`core.connectors.calls.bind_account`) and its
   connector verifies and parses the request (``parse_callback``): a :class:`plugins.BadCallback` is ``401``
   (signature) or ``400`` (malformed), and nothing is stored.
3. The event is stored once per (account, ``message_id``) in the inbox; a repeat is answered as a success.
   Work goes through the outbox, so the answer is fast — except what the channel waits for:
   ``code.issue`` (third-party codes, 三方码) is fulfilled in this transaction and answered with the codes (a
   repeat of it is answered with the same codes), ``code.query`` with the codes' states; and for a channel
   with ``third_party_codes``, ``code.redeemed``, ``order.refunded`` and ``order.cancelled`` are decided here
   and answered ``accepted`` or ``refused`` (:mod:`core.channel_orders.decisions`; a repeat gets the same
   answer).
4. The connector shapes the HTTP answer (``callback_reply``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select

from core.channel_orders.decisions import decide, decided_now
from core.channel_orders.fulfilment import (
    fulfil,
    mark_fulfilled,
    mark_handed_over,
    order_codes,
    receive_order,
)
from core.channel_orders.inbox import SYNCHRONOUS, store_event
from core.channel_orders.models import ChannelOrder
from core.connectors.calls import (
    AccountUnavailable,
    BoundAccount,
    ConnectorCallFailed,
    bind_cached,
    connector_http,
)
from core.connectors.services import find_route
from core.crypto.envelope import TenantCipher
from core.db.base import utcnow
from core.db.context import tenant_context
from core.errors import DomainError, NotFound
from plugins import BadCallback, CallbackOutcome, CallbackReply, CallbackRequest, ChannelEvent

log = structlog.get_logger("kaquan.channel_orders")
#: Seconds the connector may take to verify and parse a callback.
PARSE_LIMIT = 3.0


class CallbackRefused(DomainError):
    """The callback is not genuine or not readable (``401`` for a signature, ``400`` otherwise)."""

    status, code = 400, "channel_callback_invalid"


@dataclass(frozen=True)
class Runtime:
    """What the callback needs: the kernel (settings, database, keys) and the plugin host."""

    kernel: Any
    plugins: Any


async def tenant_of(runtime: Runtime, account_id: uuid.UUID) -> uuid.UUID:
    """The tenant of a connector account, from the account routes (read by account id under a named
    bypass); ``404`` when unknown."""
    tenant_id = await find_route(runtime.kernel.db, account_id)
    if tenant_id is None:
        raise NotFound("Unknown channel account", "未知的渠道账号", code="channel_account_not_found")
    return tenant_id


async def _parse(bound: BoundAccount, request: CallbackRequest) -> ChannelEvent:
    try:
        event: ChannelEvent = await bound.call("parse_callback", request, expect=ChannelEvent, limit=PARSE_LIMIT,
                                               refusals=(BadCallback,))
    except BadCallback as exc:
        if exc.signature:
            raise CallbackRefused("The callback's signature does not verify", "回调签名校验失败",
                                  code="channel_callback_signature", status=401) from None
        raise CallbackRefused(f"The callback could not be read: {exc.reason[:200]}",
                              f"回调内容无法解析：{exc.reason[:200]}") from None
    except ConnectorCallFailed:
        raise DomainError("The channel connector could not read the callback now", "渠道连接器暂时无法处理回调",
                          code="channel_connector_failed", status=503, headers={"Retry-After": "5"}) from None
    return event


async def _issued(session: Any, cipher: TenantCipher, order: ChannelOrder) -> CallbackOutcome:
    if order.status == "refused":
        return CallbackOutcome(status="refused", reason=order.refusal)
    codes = [c for _l, _h, c in await order_codes(session, cipher, order.id)]
    return CallbackOutcome(status="issued", codes=codes)


async def _issue(session: Any, runtime: Runtime, cipher: TenantCipher, bound: BoundAccount,
                 event: ChannelEvent) -> CallbackOutcome:
    """Third-party codes issued now, in the reply (a repeated request gets the same codes)."""
    if event.issue is None:
        raise CallbackRefused("code.issue without an order", "发码请求缺少订单")
    order, created = await receive_order(session, cipher, bound.account_id, event.issue.order, source="issue")
    if not created:
        await session.refresh(order)
        return await _issued(session, cipher, order)
    codes: list[Any] = []

    async def hand_over(lines: list[Any]) -> None:  # before the quotas are taken (a refusal undoes it): see fulfil()
        await mark_handed_over(session, [ln.id for ln in lines], reference=event.message_id)
        codes.extend(c for _l, _h, c in await order_codes(session, cipher, order.id))
        await mark_fulfilled(session, order)

    if await fulfil(session, runtime.kernel.settings, order, event.issue.order, then=hand_over) is None:
        return CallbackOutcome(status="refused", reason=order.refusal)
    return CallbackOutcome(status="issued", codes=codes)


async def _query(session: Any, cipher: TenantCipher, bound: BoundAccount, event: ChannelEvent) -> CallbackOutcome:
    if event.query is None:
        raise CallbackRefused("code.query without an order id", "查询请求缺少订单号")
    order = (await session.execute(
        select(ChannelOrder).where(ChannelOrder.account_id == bound.account_id,
                                   ChannelOrder.channel_order_id == event.query.order_id[:100])
    )).scalar_one_or_none()
    if order is None:
        return CallbackOutcome(status="refused", reason="unknown_order")
    return CallbackOutcome(status="codes", codes=[c for _l, _h, c in await order_codes(session, cipher, order.id)])


async def _reply(bound: BoundAccount, event: ChannelEvent | None, outcome: CallbackOutcome) -> CallbackReply:
    reply: object = None
    try:
        reply = bound.connector.callback_reply(bound.context(connector_http()), event, outcome)
    except Exception as exc:  # boundary: partner code shaping the HTTP answer; a plain JSON answer instead
        log.warning("channel_callback_reply_failed", account=str(bound.account_id), error=type(exc).__name__)
    if not isinstance(reply, CallbackReply):
        ok = outcome.status != "refused"
        return CallbackReply(status=200, body=b'{"ok":%s}' % (b"true" if ok else b"false"))
    return reply


async def handle_callback(
    runtime: Runtime, account_id: uuid.UUID, request: CallbackRequest
) -> CallbackReply:
    """Verify, store once, queue or answer (see the module). Raises :class:`DomainError` for a refusal."""
    tenant_id = await tenant_of(runtime, account_id)
    kernel = runtime.kernel
    with tenant_context(tenant_id):
        try:  # reused for a few seconds per process: no transaction for a burst of callbacks
            bound, cipher = await bind_cached(kernel.db, kernel.keys, runtime.plugins, account_id,
                                              kind="sales_channel")
        except AccountUnavailable as exc:
            if exc.reason in ("paused",):
                raise DomainError("This channel account is paused", "该渠道账号已暂停", status=503,
                                  code="channel_account_paused", headers={"Retry-After": "60"}) from None
            raise NotFound("Unknown channel account", "未知的渠道账号", code="channel_account_not_found") from None
        if not bound.supports("callbacks"):
            raise NotFound("This channel takes no callbacks", "该渠道不使用回调", code="channel_account_not_found")
        event = await _parse(bound, request)
        now = decided_now(bound.capabilities, event)
        async with kernel.db.transaction() as session:
            stored = await store_event(session, cipher, account_id, event, source="callback",
                                       queue=event.type not in SYNCHRONOUS, decide=now)
            if now:
                outcome = await decide(session, kernel, account_id, stored, event)
            elif event.type == "code.issue":
                outcome = await _issue(session, runtime, cipher, bound, event)
            elif event.type == "code.query":
                outcome = await _query(session, cipher, bound, event)
            else:
                outcome = CallbackOutcome(status="accepted" if stored.new else "duplicate")
    log.info("channel_callback", account=str(account_id), type=event.type, outcome=outcome.status,
             new=stored.new)
    return await _reply(bound, event, outcome)


def callback_request(headers: dict[str, str], query: dict[str, str], body: bytes,
                     received_at: dt.datetime | None = None) -> CallbackRequest:
    """The request as the connector sees it (header names lower-case)."""
    return CallbackRequest(headers={k.lower(): v for k, v in headers.items()}, query=dict(query), body=body,
                           received_at=received_at or utcnow())
