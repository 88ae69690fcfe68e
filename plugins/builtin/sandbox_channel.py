"""The built-in ``sandbox`` sales channel: an in-process simulated shop, for trying consignment end to end.

Nothing leaves the process. Each connector account has a shop kept in memory (:data:`WORLD`, keyed by the
account id): the SKUs kaquan pushed (units shown, price, version), the channel's event log (orders paid,
refunded, codes redeemed on the channel) read by :meth:`SandboxChannel.pull_orders` with a cursor, the codes
each buyer received (delivery is idempotent by order line and by ``reference``), redemptions reported by
kaquan, and the shop's statement (sale, refund and commission lines).

The shop places orders itself: with ``orders_per_pull`` above zero, every ``pull_orders`` first lets buyers
buy from the SKUs on sale (what was pushed, minus what they already bought), refund some delivered orders
(``refund_percent``) and redeem some delivered codes in stores (``redeem_percent``), deterministically from
the account id. Tests and the demo drive it with the module functions instead: :func:`place_order`,
:func:`refund`, :func:`redeem_on_channel`, :func:`issue_request`, :func:`query_request`, :func:`fail_next`;
:func:`record_issued` and :func:`read_reply` read kaquan's answers as the channel does (a ``refused`` answer
to a ``code.redeemed`` or refund callback undoes it in the shop).

Callbacks are genuine: :func:`signed_callback` signs an event's JSON with HMAC-SHA256 under the account's
``signing_secret`` (headers ``x-sandbox-timestamp`` and ``x-sandbox-signature``, over ``timestamp + "." +
body``), and :meth:`SandboxChannel.parse_callback` verifies the signature and the timestamp (five minutes)
and refuses anything else with :class:`plugins.BadCallback`.

Failures can be played, like a real channel's: :func:`fail_next` makes the shop's next calls time out, answer
5xx or 429, be unreachable, or do the work and lose the answer (``answer_lost``); the connector reports each
as a retryable failure. Imports only the partner SDK, like any partner's connector.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import random
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from plugins import (
    BadCallback,
    Buyer,
    CallbackOutcome,
    CallbackReply,
    CallbackRequest,
    CallResult,
    ChannelEvent,
    ChannelOrder,
    ChannelRedemption,
    CheckResult,
    CodeDelivery,
    CodeQuery,
    ConnectorContext,
    ConnectorInfo,
    IssuedCode,
    IssueRequest,
    OrderLine,
    OrderPage,
    RefundNotice,
    Secret,
    StatementLine,
    StatementPage,
    StatementRequest,
    StockItem,
    StockItemResult,
    StockPush,
    StockPushResult,
    hookimpl,
)
from plugins.channels import ChannelEventType

Fault = Literal["timeout", "server_error", "bad_gateway", "rate_limited", "unreachable", "answer_lost"]
FAULTS: tuple[str, ...] = ("timeout", "server_error", "bad_gateway", "rate_limited", "unreachable", "answer_lost")

SIGNATURE_HEADER = "x-sandbox-signature"
TIMESTAMP_HEADER = "x-sandbox-timestamp"
#: How old (or how far in the future) a signed callback may be.
CALLBACK_TOLERANCE = dt.timedelta(minutes=5)
MAX_SKU_LENGTH = 64


class SandboxConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The sandbox shop's settings.

    ``signing_secret`` signs the shop's callbacks (required: without it ``check`` fails and every callback is
    refused). ``page_size`` is the number of events per ``pull_orders`` page. ``orders_per_pull`` is how
    many orders buyers place at each pull (0: only orders placed by :func:`place_order`), ``max_quantity``
    the most units per order, ``refund_percent`` and ``redeem_percent`` the share of delivered orders
    refunded and of delivered codes redeemed on the channel at each pull. ``commission_bp`` is the channel's
    commission in basis points of each sale; ``latency_ms`` delays every call (to play a slow channel).
    """

    shop_name: str = "Sandbox shop"
    signing_secret: Secret = ""
    page_size: int = 50
    orders_per_pull: int = 0
    max_quantity: int = 2
    refund_percent: int = 10
    redeem_percent: int = 30
    commission_bp: int = 1000
    latency_ms: int = 0


class SandboxUnavailable(ConnectionError):
    """The sandbox shop played an outage (``fail_next``) on a call that returns no status (pulls, statements)."""


@dataclass
class ShopSku:
    """A SKU as the shop shows it: units on sale (pushed minus sold since), price, last version applied."""

    sku: str
    listing_id: str
    available: int
    price_fen: int
    active: bool
    version: int


@dataclass
class Shop:
    """One account's shop, in memory."""

    account_id: str
    skus: dict[str, ShopSku] = field(default_factory=dict)
    events: list[ChannelEvent] = field(default_factory=list)
    orders: dict[str, ChannelOrder] = field(default_factory=dict)
    #: (order id, line id) -> the codes the buyer received, in the order received (duplicates would show).
    received: dict[tuple[str, str], list[IssuedCode]] = field(default_factory=dict)
    delivery_refs: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: units refunded per (order id, line id)
    refunded: dict[tuple[str, str], int] = field(default_factory=dict)
    #: code -> "channel" (redeemed by a buyer on the channel) or "kaquan" (reported by kaquan)
    redeemed: dict[str, str] = field(default_factory=dict)
    redemption_refs: dict[str, str] = field(default_factory=dict)
    statement: list[StatementLine] = field(default_factory=list)
    faults: deque[str] = field(default_factory=deque)
    commission_bp: int = 1000
    counter: int = 0
    pulls: int = 0

    def next_id(self) -> int:
        self.counter += 1
        return self.counter

    def codes_of(self, order_id: str) -> list[IssuedCode]:
        """The codes of an order as the channel knows them, with their state."""
        out = []
        for (oid, _), codes in self.received.items():
            if oid != order_id:
                continue
            for code in codes:
                state = "redeemed" if code.code in self.redeemed else code.state
                out.append(msgspec.structs.replace(code, state=state))
        return out


class SandboxWorld:
    """Every sandbox shop of this process, by account id (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.shops: dict[str, Shop] = {}

    def shop(self, account_id: str | uuid.UUID) -> Shop:
        key = str(account_id)
        with self.lock:
            found = self.shops.get(key)
            if found is None:
                found = self.shops[key] = Shop(account_id=key)
            return found

    def reset(self, account_id: str | uuid.UUID | None = None) -> None:
        with self.lock:
            if account_id is None:
                self.shops.clear()
            else:
                self.shops.pop(str(account_id), None)


#: The shops of this process.
WORLD = SandboxWorld()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _fault_result(fault: str) -> tuple[str, bool]:
    """(detail, retryable) for a played fault."""
    return f"sandbox channel: {fault.replace('_', ' ')}", True


# -- the shop's side: what buyers and the channel do ---------------------------------------------------


def _event(
    shop: Shop,
    kind: ChannelEventType,
    at: dt.datetime,
    *,
    order: ChannelOrder | None = None,
    refund: RefundNotice | None = None,
    issue: IssueRequest | None = None,
    redemption: ChannelRedemption | None = None,
    query: CodeQuery | None = None,
) -> ChannelEvent:
    event = ChannelEvent(
        message_id=f"sbx-{shop.account_id[:8]}-{shop.next_id():08d}",
        type=kind,
        occurred_at=at,
        order=order,
        refund=refund,
        issue=issue,
        redemption=redemption,
        query=query,
    )
    shop.events.append(event)
    return event


def place_order(
    account_id: str | uuid.UUID,
    sku: str,
    quantity: int = 1,
    *,
    buyer: Buyer | None = None,
    now: dt.datetime | None = None,
    deliver_within: dt.timedelta = dt.timedelta(minutes=30),
) -> ChannelOrder:
    """A buyer pays for ``quantity`` units of ``sku`` on the shop: the order joins the event log
    (``order.paid``) and the units leave what the shop shows. Raises ``ValueError`` when the SKU is not on
    sale or has fewer units."""
    at = now or _utcnow()
    with WORLD.lock:
        shop = WORLD.shop(account_id)
        item = shop.skus.get(sku)
        if item is None or not item.active:
            raise ValueError(f"SKU {sku!r} is not on sale in this sandbox shop")
        if quantity < 1 or item.available < quantity:
            raise ValueError(f"SKU {sku!r} shows {item.available} units, not {quantity}")
        item.available -= quantity
        order_id = f"SBX{shop.next_id():08d}"
        order = ChannelOrder(
            order_id=order_id,
            placed_at=at,
            lines=[
                OrderLine(line_id=f"{order_id}-1", sku=sku, quantity=quantity, unit_price_fen=item.price_fen)
            ],
            buyer=buyer
            or Buyer(id=f"buyer-{shop.counter % 97:02d}", ip=f"10.0.{shop.counter % 7}.{shop.counter % 250}"),
            deliver_by=at + deliver_within,
        )
        shop.orders[order_id] = order
        _event(shop, "order.paid", at, order=order)
        return order


def refund(
    account_id: str | uuid.UUID,
    order_id: str,
    *,
    quantity: int | None = None,
    reason: str = "buyer asked for a refund",
    now: dt.datetime | None = None,
) -> RefundNotice:
    """The buyer gets ``quantity`` units (default: all not yet refunded) of the order's line refunded:
    ``order.refunded`` when codes were delivered, ``order.cancelled`` before delivery."""
    at = now or _utcnow()
    with WORLD.lock:
        shop = WORLD.shop(account_id)
        order = shop.orders.get(order_id)
        if order is None:
            raise ValueError(f"no order {order_id!r} in this sandbox shop")
        line = order.lines[0]
        key = (order_id, line.line_id)
        left = line.quantity - shop.refunded.get(key, 0)
        units = left if quantity is None else quantity
        if units < 1 or units > left:
            raise ValueError(f"order {order_id!r} has {left} units left to refund, not {units}")
        shop.refunded[key] = shop.refunded.get(key, 0) + units
        notice = RefundNotice(
            order_id=order_id,
            line_id=line.line_id,
            refund_id=f"RF{shop.next_id():08d}",
            quantity=units,
            amount_fen=units * line.unit_price_fen,
            reason=reason,
        )
        kind: ChannelEventType = "order.refunded" if key in shop.received else "order.cancelled"
        _event(shop, kind, at, refund=notice)
        if key in shop.received:
            shop.statement.append(
                StatementLine(
                    line_id=f"ST{shop.next_id():08d}",
                    order_id=order_id,
                    order_line_id=line.line_id,
                    kind="refund",
                    amount_fen=-notice.amount_fen,
                    occurred_at=at,
                    description=reason,
                )
            )
        return notice


def redeem_on_channel(
    account_id: str | uuid.UUID, code: str, *, store: str = "sandbox store", now: dt.datetime | None = None
) -> ChannelRedemption | None:
    """A buyer redeems a delivered code in a store through the channel (``code.redeemed`` event).

    Returns ``None`` (nothing happens) when the code was never delivered by this shop or is already redeemed
    on either side: a code is never redeemed twice."""
    at = now or _utcnow()
    with WORLD.lock:
        shop = WORLD.shop(account_id)
        if code in shop.redeemed:
            return None
        order_id = next(
            (oid for (oid, _), cs in shop.received.items() if any(c.code == code for c in cs)), None
        )
        if order_id is None:
            return None
        shop.redeemed[code] = "channel"
        redemption = ChannelRedemption(
            order_id=order_id, code=code, redeemed_at=at, reference=f"RD{shop.next_id():08d}", store=store
        )
        _event(shop, "code.redeemed", at, redemption=redemption)
        return redemption


def issue_request(
    account_id: str | uuid.UUID,
    sku: str,
    quantity: int = 1,
    *,
    buyer: Buyer | None = None,
    now: dt.datetime | None = None,
) -> ChannelEvent:
    """A local-life order: the buyer pays and the channel asks for third-party codes (``code.issue``), to
    be answered synchronously. Send the event with :func:`signed_callback`; record the reply's codes with
    :func:`record_issued`."""
    at = now or _utcnow()
    with WORLD.lock:
        order = place_order(account_id, sku, quantity, buyer=buyer, now=at)
        shop = WORLD.shop(account_id)
        shop.events.pop()  # a local-life order reaches kaquan as its issue request, not as order.paid
        return _event(shop, "code.issue", at, issue=IssueRequest(order=order))


def query_request(
    account_id: str | uuid.UUID, order_id: str, *, now: dt.datetime | None = None
) -> ChannelEvent:
    """The channel asks for the state of an order's codes (``code.query``, answered synchronously)."""
    with WORLD.lock:
        return _event(
            WORLD.shop(account_id), "code.query", now or _utcnow(), query=CodeQuery(order_id=order_id)
        )


def record_issued(account_id: str | uuid.UUID, order_id: str, reply: CallbackReply) -> list[IssuedCode]:
    """The channel reads kaquan's answer to a ``code.issue`` request and hands the codes to the buyer."""
    body = msgspec.json.decode(reply.body, type=_IssuedReply)
    with WORLD.lock:
        shop = WORLD.shop(account_id)
        order = shop.orders[order_id]
        for line in order.lines:
            codes = [c for c in body.codes if c.line_id == line.line_id]
            if codes:
                shop.received.setdefault((order_id, line.line_id), codes)
                _sale_line(shop, order, line, order.placed_at)
        return body.codes


def read_reply(account_id: str | uuid.UUID, event: ChannelEvent, reply: CallbackReply) -> bool:
    """The channel reads kaquan's answer to a ``code.redeemed`` or refund callback: ``{"ok": false}`` (refused)
    undoes the verification, or the refund, in the shop. ``True`` when the channel's action stands."""
    ok = bool(msgspec.json.decode(reply.body, type=_IssuedReply).ok) if 200 <= reply.status < 300 else False
    with WORLD.lock:
        shop = WORLD.shop(account_id)
        if ok:
            return True
        if event.redemption is not None and shop.redeemed.get(event.redemption.code) == "channel":
            del shop.redeemed[event.redemption.code]
        if event.refund is not None:
            key = (event.refund.order_id, event.refund.line_id)
            shop.refunded[key] = max(0, shop.refunded.get(key, 0) - event.refund.quantity)
            notice = event.refund
            for i in range(len(shop.statement) - 1, -1, -1):  # the refund's statement line, the newest
                st = shop.statement[i]
                if st.kind == "refund" and st.order_id == notice.order_id and st.amount_fen == -notice.amount_fen:
                    del shop.statement[i]
                    break
    return False


def fail_next(account_id: str | uuid.UUID, fault: Fault, times: int = 1) -> None:
    """Make the shop's next ``times`` calls fail with ``fault`` (one of :data:`FAULTS`)."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
    with WORLD.lock:
        WORLD.shop(account_id).faults.extend([fault] * times)


def signed_callback(
    secret: str,
    event: ChannelEvent | None = None,
    *,
    body: bytes | None = None,
    now: dt.datetime | None = None,
) -> CallbackRequest:
    """A callback as the sandbox shop sends it: the event's JSON (or ``body`` as given), signed with
    ``secret`` at ``now``. POST ``request.body`` with ``request.headers`` to ``/channels/{account}/callback``."""
    at = now or _utcnow()
    raw = body if body is not None else msgspec.json.encode(event)
    stamp = str(int(at.timestamp()))
    return CallbackRequest(
        headers={
            "content-type": "application/json",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: _sign(secret, stamp, raw),
        },
        query={},
        body=raw,
        received_at=at,
    )


def simulate(account_id: str | uuid.UUID, config: SandboxConfig, now: dt.datetime | None = None) -> int:
    """One round of shop life: buyers place up to ``orders_per_pull`` orders on the SKUs on sale, then some
    delivered orders are refunded and some delivered codes redeemed. Returns the number of events added."""
    at = now or _utcnow()
    with WORLD.lock:
        shop = WORLD.shop(account_id)
        before = len(shop.events)
        rng = random.Random(f"{shop.account_id}:{shop.pulls}")
        shop.pulls += 1
        for _ in range(max(config.orders_per_pull, 0)):
            on_sale = sorted(s.sku for s in shop.skus.values() if s.active and s.available > 0)
            if not on_sale:
                break
            sku = rng.choice(on_sale)
            units = rng.randint(1, max(1, min(config.max_quantity, shop.skus[sku].available)))
            place_order(account_id, sku, units, now=at)
        for (order_id, line_id), codes in sorted(shop.received.items()):
            left = shop.orders[order_id].lines[0].quantity - shop.refunded.get((order_id, line_id), 0)
            unredeemed = [c for c in codes if c.code not in shop.redeemed]
            if left > 0 and len(unredeemed) == len(codes) and rng.randrange(100) < config.refund_percent:
                refund(account_id, order_id, now=at)
                continue
            for code in unredeemed[:left]:
                if rng.randrange(100) < config.redeem_percent:
                    redeem_on_channel(account_id, code.code, now=at)
        return len(shop.events) - before


class _IssuedReply(msgspec.Struct, kw_only=True):
    ok: bool
    codes: list[IssuedCode] = msgspec.field(default_factory=list)


def _sign(secret: str, stamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _sale_line(shop: Shop, order: ChannelOrder, line: OrderLine, at: dt.datetime) -> None:
    gross = line.quantity * line.unit_price_fen
    shop.statement.append(
        StatementLine(
            line_id=f"ST{shop.next_id():08d}",
            order_id=order.order_id,
            order_line_id=line.line_id,
            kind="sale",
            amount_fen=gross,
            commission_fen=gross * shop.commission_bp // 10_000,
            occurred_at=at,
            description=f"{line.quantity} x {line.sku}",
        )
    )


# -- the connector ---------------------------------------------------------------------------------------


class SandboxChannel:
    """The sandbox shop's connector: every channel method, against the account's in-memory shop."""

    info = ConnectorInfo(
        id="sandbox",
        kind="sales_channel",
        display_name="Sandbox channel (simulated shop)",
        display_name_zh="沙盒渠道（模拟店铺）",
        description="An in-process simulated shop that places, refunds and redeems orders; for trying consignment.",
        description_zh="系统内置的模拟店铺，会下单、退款和核销，用于试用渠道寄售。",
        config=SandboxConfig,
        capabilities=frozenset(
            {
                "stock_push",
                "order_pull",
                "callbacks",
                "delivery",
                "refunds",
                "third_party_codes",
                "redemption_sync",
                "statements",
            }
        ),
    )

    async def _enter(self, ctx: ConnectorContext) -> tuple[Shop, str | None]:
        """The account's shop and the fault to play on this call, if any, after the configured latency."""
        config = _config(ctx)
        if config.latency_ms > 0:
            await asyncio.sleep(config.latency_ms / 1000)
        with WORLD.lock:
            shop = WORLD.shop(ctx.account_id or "platform")
            shop.commission_bp = config.commission_bp
            fault = shop.faults.popleft() if shop.faults else None
        return shop, fault

    async def check(self, ctx: ConnectorContext) -> CheckResult:
        config = _config(ctx)
        shop, fault = await self._enter(ctx)
        if fault is not None:
            return CheckResult(ok=False, detail=_fault_result(fault)[0])
        if not config.signing_secret:
            return CheckResult(ok=False, detail="set a signing secret: the shop signs its callbacks with it")
        return CheckResult(ok=True, detail=f"{config.shop_name}: {len(shop.skus)} SKUs on sale")

    async def push_stock(self, ctx: ConnectorContext, push: StockPush) -> StockPushResult:
        shop, fault = await self._enter(ctx)
        if fault is not None and fault != "answer_lost":
            detail, retryable = _fault_result(fault)
            return StockPushResult(
                items=[
                    StockItemResult(sku=i.sku, status="failed", retryable=retryable, detail=detail)
                    for i in push.items
                ]
            )
        results = []
        with WORLD.lock:
            for item in push.items:
                results.append(_apply_stock(shop, item))
        ctx.log.info("sandbox_stock_pushed", reference=push.reference, items=len(push.items))
        if fault == "answer_lost":
            detail, retryable = _fault_result("timeout")
            return StockPushResult(
                items=[
                    StockItemResult(sku=i.sku, status="failed", retryable=retryable, detail=detail)
                    for i in push.items
                ]
            )
        return StockPushResult(items=results)

    async def pull_orders(self, ctx: ConnectorContext, cursor: str) -> OrderPage:
        config = _config(ctx)
        shop, fault = await self._enter(ctx)
        if fault is not None:
            raise SandboxUnavailable(_fault_result(fault)[0])
        start = _read_cursor(cursor)
        if config.orders_per_pull > 0 and start >= len(shop.events):
            simulate(shop.account_id, config, ctx.now())
        with WORLD.lock:
            size = max(config.page_size, 1)
            events = shop.events[start : start + size]
            end = start + len(events)
            has_more = end < len(shop.events)
        ctx.log.debug("sandbox_orders_pulled", events=len(events), has_more=has_more)
        return OrderPage(events=events, next_cursor=f"sbx:{end}", has_more=has_more)

    async def parse_callback(self, ctx: ConnectorContext, request: CallbackRequest) -> ChannelEvent:
        secret = _config(ctx).signing_secret
        stamp = request.headers.get(TIMESTAMP_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not secret:
            raise BadCallback("the account has no signing secret", signature=True)
        if not stamp or not signature:
            raise BadCallback("missing signature headers", signature=True)
        if not hmac.compare_digest(_sign(secret, stamp, request.body), signature):
            raise BadCallback("bad signature", signature=True)
        try:
            sent_at = dt.datetime.fromtimestamp(int(stamp), dt.UTC)
        except (ValueError, OverflowError, OSError):
            raise BadCallback("bad timestamp", signature=True) from None
        if abs(ctx.now() - sent_at) > CALLBACK_TOLERANCE:
            raise BadCallback("stale timestamp", signature=True)
        try:
            event = msgspec.json.decode(request.body, type=ChannelEvent)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BadCallback(f"malformed body: {exc}") from None
        if _payload_missing(event):
            raise BadCallback(f"event {event.type} without its payload")
        return event

    def callback_reply(
        self, ctx: ConnectorContext, event: ChannelEvent | None, outcome: CallbackOutcome
    ) -> CallbackReply:
        if event is None:
            return CallbackReply(
                status=401, body=msgspec.json.encode({"ok": False, "reason": outcome.reason})
            )
        if outcome.status == "refused":
            return CallbackReply(
                status=200, body=msgspec.json.encode({"ok": False, "reason": outcome.reason})
            )
        body: dict[str, object] = {"ok": True}
        if outcome.status in ("issued", "codes"):
            body["codes"] = outcome.codes
        return CallbackReply(status=200, body=msgspec.json.encode(body))

    async def deliver_codes(self, ctx: ConnectorContext, delivery: CodeDelivery) -> CallResult:
        shop, fault = await self._enter(ctx)
        if fault is not None and fault != "answer_lost":
            detail, retryable = _fault_result(fault)
            return CallResult(status="failed", retryable=retryable, detail=detail)
        with WORLD.lock:
            result = _deliver(shop, delivery, ctx.now())
        ctx.log.info(
            "sandbox_codes_delivered",
            order=delivery.order_id,
            line=delivery.line_id,
            codes=len(delivery.codes),
            status=result.status,
        )
        if fault == "answer_lost":
            detail, retryable = _fault_result("timeout")
            return CallResult(status="failed", retryable=retryable, detail=detail)
        return result

    async def report_redemption(self, ctx: ConnectorContext, redemption: ChannelRedemption) -> CallResult:
        shop, fault = await self._enter(ctx)
        if fault is not None and fault != "answer_lost":
            detail, retryable = _fault_result(fault)
            return CallResult(status="failed", retryable=retryable, detail=detail)
        with WORLD.lock:
            result = _report_redemption(shop, redemption)
        if fault == "answer_lost":
            detail, retryable = _fault_result("timeout")
            return CallResult(status="failed", retryable=retryable, detail=detail)
        return result

    async def fetch_statement(self, ctx: ConnectorContext, request: StatementRequest) -> StatementPage:
        config = _config(ctx)
        shop, fault = await self._enter(ctx)
        if fault is not None:
            raise SandboxUnavailable(_fault_result(fault)[0])
        with WORLD.lock:
            lines = [s for s in shop.statement if request.start <= s.occurred_at < request.end]
        start = _read_cursor(request.cursor)
        size = max(config.page_size, 1)
        page = lines[start : start + size]
        end = start + len(page)
        return StatementPage(lines=page, next_cursor=f"sbx:{end}", has_more=end < len(lines))


def _config(ctx: ConnectorContext) -> SandboxConfig:
    config = ctx.config
    return (
        config
        if isinstance(config, SandboxConfig)
        else msgspec.convert(msgspec.to_builtins(config), SandboxConfig, strict=False)
    )


def _read_cursor(cursor: str) -> int:
    if not cursor:
        return 0
    prefix, _, number = cursor.partition(":")
    if prefix != "sbx" or not number.isdigit():
        raise ValueError(f"not a sandbox cursor: {cursor[:40]!r}")
    return int(number)


def _payload_missing(event: ChannelEvent) -> bool:
    needs = {
        "order.paid": event.order,
        "order.cancelled": event.refund,
        "order.refunded": event.refund,
        "code.issue": event.issue,
        "code.redeemed": event.redemption,
        "code.query": event.query,
    }
    return event.type in needs and needs[event.type] is None


def _apply_stock(shop: Shop, item: StockItem) -> StockItemResult:
    sku = item.sku
    if not sku or len(sku) > MAX_SKU_LENGTH or not sku.isprintable() or " " in sku:
        return StockItemResult(sku=sku, status="rejected", detail="not a valid SKU id for this shop")
    if item.available < 0 or item.price_fen <= 0:
        return StockItemResult(sku=sku, status="rejected", detail="units must be ≥ 0 and the price > 0")
    known = shop.skus.get(sku)
    if known is not None and item.version and item.version < known.version:
        # an older push arriving late: the shop keeps the newer one it already applied
        return StockItemResult(
            sku=sku, status="ok", channel_available=known.available, detail="older version"
        )
    shop.skus[sku] = ShopSku(
        sku=sku,
        listing_id=item.listing_id,
        available=item.available,
        price_fen=item.price_fen,
        active=item.active,
        version=item.version,
    )
    return StockItemResult(sku=sku, status="ok", channel_available=item.available if item.active else 0)


def _deliver(shop: Shop, delivery: CodeDelivery, at: dt.datetime) -> CallResult:
    order = shop.orders.get(delivery.order_id)
    line = next((ln for ln in order.lines if ln.line_id == delivery.line_id), None) if order else None
    if order is None or line is None:
        return CallResult(status="rejected", detail="no such order line in this shop")
    key = (order.order_id, line.line_id)
    known = shop.delivery_refs.get(delivery.reference)
    if known == key:
        return CallResult(
            status="ok", channel_ref=f"DL-{delivery.reference[-24:]}", detail="already delivered"
        )
    if key in shop.received:
        same = sorted(c.code for c in shop.received[key]) == sorted(c.code for c in delivery.codes)
        if same:
            shop.delivery_refs[delivery.reference] = key
            return CallResult(
                status="ok", channel_ref=f"DL-{delivery.reference[-24:]}", detail="already delivered"
            )
        return CallResult(status="rejected", detail="this order line was delivered with other codes")
    if shop.refunded.get(key, 0) >= line.quantity:
        return CallResult(status="rejected", detail="the order was refunded: it is closed")
    if len(delivery.codes) != line.quantity:
        return CallResult(
            status="rejected", detail=f"the line needs {line.quantity} codes, got {len(delivery.codes)}"
        )
    shop.received[key] = list(delivery.codes)
    shop.delivery_refs[delivery.reference] = key
    _sale_line(shop, order, line, at)
    return CallResult(status="ok", channel_ref=f"DL-{delivery.reference[-24:]}")


def _report_redemption(shop: Shop, redemption: ChannelRedemption) -> CallResult:
    if shop.redemption_refs.get(redemption.reference) == redemption.code:
        return CallResult(status="ok", detail="already recorded", channel_ref=redemption.reference)
    delivered = any(
        c.code == redemption.code
        for (oid, _), cs in shop.received.items()
        if oid == redemption.order_id
        for c in cs
    )
    if not delivered:
        return CallResult(status="rejected", detail="this shop never delivered that code for that order")
    side = shop.redeemed.get(redemption.code)
    if side == "channel":
        return CallResult(status="rejected", detail="the code was already redeemed on the channel")
    if side == "kaquan":
        return CallResult(status="ok", detail="already recorded", channel_ref=redemption.reference)
    shop.redeemed[redemption.code] = "kaquan"
    shop.redemption_refs[redemption.reference] = redemption.code
    return CallResult(status="ok", channel_ref=redemption.reference)


CONNECTOR = SandboxChannel()


@hookimpl
def kaquan_connectors() -> list[SandboxChannel]:
    return [CONNECTOR]
