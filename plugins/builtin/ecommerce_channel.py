"""The built-in ``ecommerce`` sales channel: a marketplace shop selling virtual goods with automatic delivery.

It follows the JSON contract in ``docs/connectors/ecommerce.md``, modelled on the open platforms of the big
Chinese marketplaces (a router of named methods, requests signed with the app secret, ``code`` 10000 for
success, shop authorisation by OAuth2 authorisation code, trade messages pushed to the merchant and kept in
an incremental feed, 卡密 automatic delivery): stock and price push, order messages by callback and by
cursor, code delivery, refunds and cancellations, bills. Registered through the ``kaquan`` entry-point group
like any partner plugin, and it imports only the partner SDK.
"""

from __future__ import annotations

from typing import Any

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
    ConnectorContext,
    ConnectorInfo,
    OAuthClientSpec,
    OrderLine,
    OrderPage,
    RefundNotice,
    Secret,
    StatementLine,
    StatementPage,
    StatementRequest,
    StockItemResult,
    StockPush,
    StockPushResult,
    hookimpl,
)
from plugins.builtin import _channel_http as wire

#: ``code`` of a successful answer; codes worth retrying (system busy, rate limited); token refused.
SUCCESS = 10000
RETRYABLE_CODES = frozenset({20000, 50002})
TOKEN_CODES = frozenset({30001, 30002})

#: Message tags of the trade feed and the event each becomes.
TAGS: dict[str, str] = {
    "trade.paid": "order.paid",
    "trade.cancelled": "order.cancelled",
    "trade.refund_success": "order.refunded",
    "ping": "ping",
}

BILL_KINDS = frozenset({"sale", "refund", "commission", "adjustment"})


class EcommerceConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The shop's app on the marketplace's open platform.

    ``base_url``: the open platform (API, token endpoint); ``authorize_url``: where the shop owner grants
    access (default ``{base_url}/oauth2/authorize``); ``app_key`` / ``app_secret``: the app's credentials
    (the secret signs every request and every message); ``shop_id``: the authorised shop.
    """

    base_url: str = "https://openapi.ecommerce.example"
    authorize_url: str = ""
    app_key: str = "kaquan-app"
    app_secret: Secret = ""
    shop_id: str = ""
    scope: str = "trade stock bill"
    page_size: int = 100
    timeout_seconds: float = 8.0
    callback_tolerance_seconds: int = wire.DEFAULT_TOLERANCE


class EcommerceChannel:
    """A marketplace shop: one signed JSON request per call, trade messages in and 卡密 delivery out."""

    info = ConnectorInfo(
        id="ecommerce",
        kind="sales_channel",
        display_name="Marketplace shop (virtual goods)",
        display_name_zh="电商平台店铺（虚拟商品自动发货）",
        description="Sells codes as virtual goods on a marketplace: stock push, order messages, automatic "
        "delivery of codes, refunds, bills. Shop authorisation by OAuth2.",
        description_zh="在电商平台以虚拟商品售卖券码：库存同步、订单消息、自动发码、退款、账单；店铺通过 OAuth2 授权。",
        config=EcommerceConfig,
        capabilities=frozenset(
            {"stock_push", "order_pull", "callbacks", "delivery", "refunds", "statements", "oauth"}
        ),
        version="1",
    )

    # -- authorisation ---------------------------------------------------------------------------------

    def oauth_client(self, config: Any) -> OAuthClientSpec:
        """The marketplace's authorisation-code endpoints, with the app as the OAuth2 client."""
        cfg = _config(config)
        base = cfg.base_url.rstrip("/")
        return OAuthClientSpec(
            authorize_url=cfg.authorize_url or f"{base}/oauth2/authorize",
            token_url=f"{base}/oauth2/access_token",
            client_id=cfg.app_key,
            client_secret=cfg.app_secret,
            scope=cfg.scope,
        )

    async def check(self, ctx: ConnectorContext) -> CheckResult:
        if not ctx.access_token:
            return CheckResult(ok=False, detail="the shop has not authorised the app yet")
        answer = await self._api(ctx, "shop.info", {})
        if not answer.ok:
            return CheckResult(ok=False, detail=answer.detail)
        assert answer.data is not None
        name = wire.text(answer.data, "shop_name")
        return CheckResult(ok=True, detail=f"shop {name}".strip() if name else "shop reachable")

    # -- stock -----------------------------------------------------------------------------------------

    async def push_stock(self, ctx: ConnectorContext, push: StockPush) -> StockPushResult:
        params = {
            "request_id": push.reference,
            "items": [
                {
                    "sku_id": item.sku,
                    "stock_num": max(item.available, 0),
                    "price": item.price_fen,
                    "on_sale": item.active,
                    "version": item.version,
                }
                for item in push.items
            ],
        }
        answer = await self._api(ctx, "sku.stock.batch_update", params)
        if not answer.ok:
            return StockPushResult(
                items=wire.items_failed(push.items, answer.detail, retryable=answer.retryable)
            )
        assert answer.data is not None
        try:
            rows = wire.objects(answer.data, "results")
        except BadCallback:
            rows = []
        answered: dict[str, StockItemResult] = {}
        for row in rows:
            sku = wire.text(row, "sku_id")
            stock = row.get("stock_num")
            channel_available = stock if isinstance(stock, int) and not isinstance(stock, bool) else None
            if row.get("success") is True:
                answered[sku] = StockItemResult(sku=sku, status="ok", channel_available=channel_available)
            else:
                code = row.get("err_code")
                retryable = code in RETRYABLE_CODES
                answered[sku] = StockItemResult(
                    sku=sku,
                    status="failed" if retryable else "rejected",
                    channel_available=channel_available,
                    retryable=retryable,
                    detail=f"{code}: {wire.text(row, 'err_msg')}"[:300],
                )
        return StockPushResult(items=wire.item_results(push.items, answered))

    # -- orders ----------------------------------------------------------------------------------------

    async def pull_orders(self, ctx: ConnectorContext, cursor: str) -> OrderPage:
        cfg = _config(ctx.config)
        answer = await self._api(ctx, "message.increment.list", {"cursor": cursor, "size": cfg.page_size})
        if not answer.ok:
            raise wire.ChannelUnavailable(answer.detail, retryable=answer.retryable)
        assert answer.data is not None
        try:
            events = [_event(m) for m in wire.objects(answer.data, "messages")]
            next_cursor = wire.text(answer.data, "next_cursor", cursor) or cursor
        except BadCallback as exc:
            raise wire.ChannelUnavailable(f"unreadable message page: {exc.reason}", retryable=True) from None
        return OrderPage(events=events, next_cursor=next_cursor, has_more=answer.data.get("has_more") is True)

    async def parse_callback(self, ctx: ConnectorContext, request: CallbackRequest) -> ChannelEvent:
        cfg = _config(ctx.config)
        body = wire.body_text(request.body)
        timestamp = request.headers.get("x-timestamp", "")
        if request.headers.get("x-app-key", "") != cfg.app_key:
            raise BadCallback("message for another app", signature=True)
        message = f"{cfg.app_key}\n{timestamp}\n{body}"
        if not wire.verify(cfg.app_secret, message, request.headers.get("x-sign", "")):
            raise BadCallback("bad signature", signature=True)
        wire.check_fresh(timestamp, ctx.now(), cfg.callback_tolerance_seconds)
        return _event(wire.json_object(body))

    def callback_reply(
        self, ctx: ConnectorContext, event: ChannelEvent | None, outcome: CallbackOutcome
    ) -> CallbackReply:
        """The marketplace only wants to know the message arrived: ``code`` 0 for anything kaquan stored
        (a refusal is kaquan's business, not the message's); 400 for a message kaquan could not take."""
        if event is None:
            return CallbackReply(
                status=400, body=wire.dumps({"code": 40000, "msg": outcome.reason or "refused"})
            )
        body: dict[str, Any] = {"code": 0, "msg": "success"}
        if outcome.status == "refused" and outcome.reason:
            body["remark"] = outcome.reason[:200]
        return CallbackReply(status=200, body=wire.dumps(body))

    # -- delivery --------------------------------------------------------------------------------------

    async def deliver_codes(self, ctx: ConnectorContext, delivery: CodeDelivery) -> CallResult:
        params = {
            "order_id": delivery.order_id,
            "line_id": delivery.line_id,
            "request_id": delivery.reference,
            "cards": [
                {"card_no": c.code, "card_pwd": c.pin, "expire_time": wire.to_epoch(c.expires_at)}
                for c in delivery.codes
            ],
        }
        answer = await self._api(ctx, "order.virtual.deliver", params)
        if not answer.ok:
            return wire.call_failed(answer.detail, retryable=answer.retryable)
        assert answer.data is not None
        return CallResult(status="ok", channel_ref=wire.text(answer.data, "delivery_id"))

    async def report_redemption(self, ctx: ConnectorContext, redemption: ChannelRedemption) -> CallResult:
        """Marketplace codes are redeemed at the merchant, not verified by the marketplace: nothing to report."""
        return CallResult(
            status="rejected", detail="the marketplace does not verify codes (no redemption_sync)"
        )

    # -- bills -----------------------------------------------------------------------------------------

    async def fetch_statement(self, ctx: ConnectorContext, request: StatementRequest) -> StatementPage:
        cfg = _config(ctx.config)
        params = {
            "start_time": wire.to_epoch(request.start),
            "end_time": wire.to_epoch(request.end),
            "cursor": request.cursor,
            "size": cfg.page_size,
        }
        answer = await self._api(ctx, "bill.list", params)
        if not answer.ok:
            raise wire.ChannelUnavailable(answer.detail, retryable=answer.retryable)
        assert answer.data is not None
        try:
            lines = [_bill(row) for row in wire.objects(answer.data, "bills")]
        except BadCallback as exc:
            raise wire.ChannelUnavailable(f"unreadable bill page: {exc.reason}", retryable=True) from None
        return StatementPage(
            lines=lines,
            next_cursor=wire.text(answer.data, "next_cursor"),
            has_more=answer.data.get("has_more") is True,
        )

    # -- the router ------------------------------------------------------------------------------------

    async def _api(self, ctx: ConnectorContext, method: str, params: dict[str, Any]) -> wire.Answer:
        """One signed call of ``method``; ``data`` is the answer's ``data`` object when ``code`` is 10000."""
        cfg = _config(ctx.config)
        body = wire.dumps(params)
        timestamp = str(int(ctx.now().timestamp()))
        headers = {
            "X-App-Key": cfg.app_key,
            "X-Method": method,
            "X-Timestamp": timestamp,
            "X-Sign": wire.sign(cfg.app_secret, f"{cfg.app_key}\n{method}\n{timestamp}\n".encode() + body),
        }
        if ctx.access_token:
            headers["X-Access-Token"] = ctx.access_token
        url = f"{cfg.base_url.rstrip('/')}/api/{method}"
        answer = await wire.send_json(ctx.http, url, body, headers, seconds=cfg.timeout_seconds)
        if not answer.ok:
            ctx.log.warning("ecommerce_call_failed", method=method, detail=answer.detail)
            return answer
        assert answer.data is not None
        code = answer.data.get("code")
        if code == SUCCESS:
            data = answer.data.get("data")
            return wire.Answer(data if isinstance(data, dict) else {}, http_status=answer.http_status)
        if not isinstance(code, int) or isinstance(code, bool):
            return wire.Answer(
                None, answer.http_status, retryable=True, detail="channel answered without a code"
            )
        sub = wire.text(answer.data, "sub_msg") or wire.text(answer.data, "msg")
        detail = f"channel refused {method}: {code} {wire.text(answer.data, 'sub_code')} {sub}".strip()
        if code in TOKEN_CODES:
            detail = f"channel refused the access token ({code}); the shop must authorise again"
        ctx.log.warning("ecommerce_call_refused", method=method, code=code)
        return wire.Answer(None, answer.http_status, retryable=code in RETRYABLE_CODES, detail=detail[:300])


def _config(config: Any) -> EcommerceConfig:
    return config if isinstance(config, EcommerceConfig) else EcommerceConfig()


def _event(message: dict[str, Any]) -> ChannelEvent:
    """A trade message (callback or feed) as a :class:`ChannelEvent`; :class:`BadCallback` if malformed."""
    msg_id = wire.text(message, "msg_id")
    tag = wire.text(message, "tag")
    if not msg_id:
        raise BadCallback("message without msg_id")
    if tag not in TAGS:
        raise BadCallback(f"unknown message tag {tag[:40]!r}")
    occurred = wire.epoch(message, "created")
    assert occurred is not None
    data = wire.mapping(message, "data")
    kind = TAGS[tag]
    if kind == "order.paid":
        return ChannelEvent(message_id=msg_id, type="order.paid", occurred_at=occurred, order=_order(data))
    if kind == "ping":
        return ChannelEvent(message_id=msg_id, type="ping", occurred_at=occurred)
    refund = RefundNotice(
        order_id=wire.required(data, "order_id"),
        line_id=wire.required(data, "line_id"),
        refund_id=wire.required(data, "refund_id"),
        quantity=wire.integer(data, "num"),
        amount_fen=wire.integer(data, "refund_amount", 0),
        reason=wire.text(data, "reason")[:200],
    )
    if kind == "order.cancelled":
        return ChannelEvent(message_id=msg_id, type="order.cancelled", occurred_at=occurred, refund=refund)
    return ChannelEvent(message_id=msg_id, type="order.refunded", occurred_at=occurred, refund=refund)


def _order(data: dict[str, Any]) -> ChannelOrder:
    buyer = wire.mapping(data, "buyer")
    lines = [
        OrderLine(
            line_id=wire.required(item, "line_id"),
            sku=wire.required(item, "sku_id"),
            quantity=wire.positive(item, "num"),
            unit_price_fen=wire.integer(item, "price"),
        )
        for item in wire.objects(data, "items")
    ]
    if not lines:
        raise BadCallback("order without items")
    placed = wire.epoch(data, "paid_at")
    assert placed is not None
    return ChannelOrder(
        order_id=wire.required(data, "order_id"),
        placed_at=placed,
        lines=lines,
        buyer=Buyer(
            id=wire.text(buyer, "buyer_id"), phone=wire.text(buyer, "phone"), ip=wire.text(buyer, "ip")
        ),
        deliver_by=wire.epoch(data, "deliver_deadline", required=False),
    )


def _bill(row: dict[str, Any]) -> StatementLine:
    kind = wire.text(row, "type")
    if kind not in BILL_KINDS:
        raise BadCallback(f"unknown bill type {kind[:40]!r}")
    occurred = wire.epoch(row, "time")
    assert occurred is not None
    return StatementLine(
        line_id=wire.required(row, "bill_id"),
        order_id=wire.text(row, "order_id"),
        order_line_id=wire.text(row, "line_id"),
        kind=kind,  # type: ignore[arg-type]  # checked against BILL_KINDS above
        amount_fen=wire.integer(row, "amount"),
        commission_fen=wire.integer(row, "commission", 0),
        occurred_at=occurred,
        description=wire.text(row, "remark")[:200],
    )


CONNECTOR = EcommerceChannel()


@hookimpl
def kaquan_connectors() -> list[EcommerceChannel]:
    return [CONNECTOR]
