"""Pebble Mall: a kaquan sales channel for the fictional Pebble Mall marketplace of virtual goods."""

import datetime as dt
import hashlib
import hmac

import httpx
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
    CheckResult,
    CodeDelivery,
    ConnectorContext,
    ConnectorInfo,
    OrderLine,
    OrderPage,
    RefundNotice,
    Secret,
    StockItemResult,
    StockPush,
    StockPushResult,
    hookimpl,
)


class PebbleMallConfig(msgspec.Struct, frozen=True, kw_only=True):
    api_base: str = "https://open.pebble-mall.example/v1"
    shop_id: str = ""
    app_secret: Secret = ""  # signs our requests and the mall's callbacks


# The mall's wire format: what its API answers and its callbacks carry.
class WireItem(msgspec.Struct):
    line_id: str
    sku: str
    qty: int
    price: int


class WireOrder(msgspec.Struct):
    id: str
    paid_at: dt.datetime
    items: list[WireItem]
    buyer_id: str = ""


class WireRefund(msgspec.Struct):
    id: str
    order_id: str
    line_id: str
    qty: int
    amount: int
    reason: str = ""


class WireEvent(msgspec.Struct):
    id: str
    type: str
    at: dt.datetime
    order: WireOrder | None = None
    refund: WireRefund | None = None


class WireEvents(msgspec.Struct):
    events: list[WireEvent]
    next: str
    more: bool = False


class WireStockResult(msgspec.Struct):
    sku: str
    ok: bool
    shown: int | None = None
    error: str = ""


class WireStockAnswer(msgspec.Struct):
    results: list[WireStockResult]


class MallUnavailable(Exception):
    """A time-out, a refused connection, a 429 or a 5xx: worth a retry."""


def sign(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def to_event(wire: WireEvent) -> ChannelEvent:
    if wire.type == "order.paid" and wire.order is not None:
        order = ChannelOrder(
            order_id=wire.order.id,
            placed_at=wire.order.paid_at,
            lines=[
                OrderLine(line_id=i.line_id, sku=i.sku, quantity=i.qty, unit_price_fen=i.price)
                for i in wire.order.items
            ],
            buyer=Buyer(id=wire.order.buyer_id),
        )
        return ChannelEvent(message_id=wire.id, type="order.paid", occurred_at=wire.at, order=order)
    if wire.type == "order.refunded" and wire.refund is not None:
        r = wire.refund
        refund = RefundNotice(
            order_id=r.order_id,
            line_id=r.line_id,
            refund_id=r.id,
            quantity=r.qty,
            amount_fen=r.amount,
            reason=r.reason,
        )
        return ChannelEvent(message_id=wire.id, type="order.refunded", occurred_at=wire.at, refund=refund)
    raise BadCallback(f"unknown event {wire.type!r}")


class PebbleMallChannel:
    info = ConnectorInfo(
        id="pebble_mall",
        kind="sales_channel",
        display_name="Pebble Mall",
        display_name_zh="卵石商城",
        config=PebbleMallConfig,
        capabilities=frozenset({"stock_push", "order_pull", "callbacks", "delivery", "refunds"}),
    )

    async def _call(
        self,
        ctx: ConnectorContext,
        method: str,
        path: str,
        body: object = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        raw = b"" if body is None else msgspec.json.encode(body)
        headers = {
            "content-type": "application/json",
            "x-pebble-shop": ctx.config.shop_id,
            "x-pebble-sign": sign(ctx.config.app_secret, raw),
        }
        try:
            response = await ctx.http.request(
                method, ctx.config.api_base + path, content=raw, headers=headers, params=params
            )
        except httpx.HTTPError as exc:  # time-out, refused or dropped connection
            ctx.log.warning("pebble_mall_unreachable", path=path, error=type(exc).__name__)
            raise MallUnavailable(f"the mall is unreachable ({type(exc).__name__})") from None
        if response.status_code == 429 or response.status_code >= 500:
            ctx.log.warning("pebble_mall_try_later", path=path, status=response.status_code)
            raise MallUnavailable(f"the mall answered {response.status_code}")
        return response

    async def check(self, ctx: ConnectorContext) -> CheckResult:
        try:
            response = await self._call(ctx, "GET", "/shop")
        except MallUnavailable as exc:
            return CheckResult(ok=False, detail=str(exc))
        if response.status_code != 200:
            return CheckResult(
                ok=False, detail=f"the mall refused the shop settings ({response.status_code})"
            )
        return CheckResult(ok=True, detail="connected")

    async def push_stock(self, ctx: ConnectorContext, push: StockPush) -> StockPushResult:
        body = {
            "reference": push.reference,
            "items": [
                {
                    "sku": i.sku,
                    "quantity": i.available if i.active else 0,
                    "price": i.price_fen,
                    "version": i.version,
                }
                for i in push.items
            ],
        }

        def all_items(status: str, detail: str, retryable: bool) -> StockPushResult:
            return StockPushResult(
                items=[
                    StockItemResult(sku=i.sku, status=status, detail=detail, retryable=retryable)
                    for i in push.items
                ]
            )

        try:
            response = await self._call(ctx, "POST", "/stock", body)
        except MallUnavailable as exc:
            return all_items("failed", str(exc), True)
        if response.status_code != 200:
            return all_items("rejected", f"the mall refused the push ({response.status_code})", False)
        try:
            answer = msgspec.json.decode(response.content, type=WireStockAnswer)
        except msgspec.MsgspecError:
            return all_items("failed", "unreadable answer", True)
        by_sku = {r.sku: r for r in answer.results}
        items = []
        for item in push.items:
            got = by_sku.get(item.sku)
            if got is None:
                items.append(
                    StockItemResult(sku=item.sku, status="failed", retryable=True, detail="no answer")
                )
            elif got.ok:
                items.append(StockItemResult(sku=item.sku, status="ok", channel_available=got.shown))
            else:
                items.append(StockItemResult(sku=item.sku, status="rejected", detail=got.error))
        return StockPushResult(items=items)

    async def pull_orders(self, ctx: ConnectorContext, cursor: str) -> OrderPage:
        # An outage raises: kaquan records it, keeps the cursor and pulls again later.
        response = await self._call(ctx, "GET", "/events", params={"after": cursor})
        if response.status_code != 200:
            raise MallUnavailable(f"the mall refused the events query ({response.status_code})")
        page = msgspec.json.decode(response.content, type=WireEvents)
        return OrderPage(events=[to_event(e) for e in page.events], next_cursor=page.next, has_more=page.more)

    async def parse_callback(self, ctx: ConnectorContext, request: CallbackRequest) -> ChannelEvent:
        stamp = request.headers.get("x-pebble-timestamp", "")
        given = request.headers.get("x-pebble-signature", "")
        if not (stamp and given and ctx.config.app_secret):
            raise BadCallback("unsigned callback", signature=True)
        expected = sign(ctx.config.app_secret, stamp.encode() + b"." + request.body)
        if not hmac.compare_digest(expected, given):
            raise BadCallback("bad signature", signature=True)
        if not stamp.isdigit() or abs(ctx.now().timestamp() - int(stamp)) > 300:
            raise BadCallback("stale callback", signature=True)
        try:
            wire = msgspec.json.decode(request.body, type=WireEvent)
        except msgspec.MsgspecError:
            raise BadCallback("malformed callback") from None
        return to_event(wire)

    def callback_reply(
        self, ctx: ConnectorContext, event: ChannelEvent | None, outcome: CallbackOutcome
    ) -> CallbackReply:
        if event is None:  # not genuine: the mall sends it again, and someone looks at the settings
            return CallbackReply(status=401, body=b'{"code": "bad_signature"}')
        if outcome.status == "refused":
            return CallbackReply(body=msgspec.json.encode({"code": "refused", "reason": outcome.reason}))
        return CallbackReply(body=b'{"code": "ok"}')  # accepted, or a duplicate: the mall stops sending it

    async def deliver_codes(self, ctx: ConnectorContext, delivery: CodeDelivery) -> CallResult:
        body = {
            "line_id": delivery.line_id,
            "reference": delivery.reference,  # the mall delivers once per reference
            "codes": [{"code": c.code, "pin": c.pin} for c in delivery.codes],
        }
        try:
            response = await self._call(ctx, "POST", f"/orders/{delivery.order_id}/deliveries", body)
        except MallUnavailable as exc:
            return CallResult(status="failed", retryable=True, detail=str(exc))
        if response.status_code != 200:
            return CallResult(
                status="rejected", detail=f"the mall refused the delivery ({response.status_code})"
            )
        ctx.log.info("pebble_mall_delivered", order=delivery.order_id, codes=len(delivery.codes))
        return CallResult(status="ok", channel_ref=delivery.reference)


@hookimpl
def kaquan_connectors():
    return [PebbleMallChannel()]
