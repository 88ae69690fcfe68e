"""The built-in ``social`` sales channel: a mini-program or short-video shop, with share and KOL attribution.

It follows the JSON contract in ``docs/connectors/social.md``, modelled on the WeChat mini-program / Channels
(视频号) shop and the short-video shops: an app access token from ``appid`` and ``secret`` (cached until
shortly before it expires, fetched again when the platform says it expired), ``errcode`` 0 for success,
order events pushed to the merchant with a signature over timestamp, nonce and body (and kept in an order
list the merchant can page through with ``next_key``), and on every order its ``source_info``: the sharer
whose link sold it (``referrer``) and the creator (达人 / 视频号) it is attributed to (``kol``). Codes are
delivered as virtual goods. It imports only the partner SDK.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from typing import Any, Literal

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

#: errcodes: success; worth retrying (system busy, rate limited); the access token is invalid or expired.
SUCCESS = 0
RETRYABLE_CODES = frozenset({-1, 45009})
TOKEN_CODES = frozenset({40001, 40014, 42001})
#: Fetch a new token this long before the old one expires.
TOKEN_MARGIN = dt.timedelta(minutes=5)

EVENTS: dict[str, str] = {
    "channels_ec_order_pay": "order.paid",
    "channels_ec_order_cancel": "order.cancelled",
    "channels_ec_aftersale_success": "order.refunded",
    "ping": "ping",
}
FLOW_KINDS = frozenset({"sale", "refund", "commission", "adjustment"})


class SocialConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The shop's app: ``appid`` and ``secret`` get the access token; ``callback_token`` signs the
    platform's event pushes; ``shop_type`` is ``mini_program`` or ``short_video`` (shown to the tenant)."""

    base_url: str = "https://api.social.example"
    appid: str = "wx-kaquan"
    secret: Secret = ""
    callback_token: Secret = ""
    shop_type: Literal["mini_program", "short_video"] = "mini_program"
    page_size: int = 100
    timeout_seconds: float = 8.0
    callback_tolerance_seconds: int = wire.DEFAULT_TOLERANCE


class _TokenCache:
    """Access tokens by (endpoint, appid, secret digest), each until shortly before it expires."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str, str], tuple[str, dt.datetime]] = {}

    @staticmethod
    def key(cfg: SocialConfig) -> tuple[str, str, str]:
        return (cfg.base_url, cfg.appid, hashlib.sha256(cfg.secret.encode()).hexdigest())

    def get(self, cfg: SocialConfig, now: dt.datetime) -> str:
        with self._lock:
            token, until = self._tokens.get(self.key(cfg), ("", now))
        return token if until > now else ""

    def put(self, cfg: SocialConfig, token: str, until: dt.datetime) -> None:
        with self._lock:
            self._tokens[self.key(cfg)] = (token, until)

    def drop(self, cfg: SocialConfig) -> None:
        with self._lock:
            self._tokens.pop(self.key(cfg), None)


class SocialChannel:
    """A social shop: orders carry the share link and the creator they are attributed to."""

    info = ConnectorInfo(
        id="social",
        kind="sales_channel",
        display_name="Social shop (mini-program, short video)",
        display_name_zh="社交电商（小程序、短视频小店）",
        description="Sells codes in a mini-program or short-video shop; orders carry the sharer (referrer) and "
        "the creator (KOL) they are attributed to. Stock push, order events, virtual delivery, refunds.",
        description_zh="在小程序或短视频小店售卖券码，订单带分享人（推荐人）和达人归属；库存同步、订单事件、虚拟发货、退款。",
        config=SocialConfig,
        capabilities=frozenset(
            {"stock_push", "order_pull", "callbacks", "delivery", "refunds", "statements"}
        ),
        version="1",
    )

    def __init__(self) -> None:
        self.tokens = _TokenCache()

    async def check(self, ctx: ConnectorContext) -> CheckResult:
        answer = await self._api(ctx, "channels/ec/basics/info/get", {})
        if not answer.ok:
            return CheckResult(ok=False, detail=answer.detail)
        assert answer.data is not None
        info = answer.data.get("info")
        name = wire.text(info, "nickname") if isinstance(info, dict) else ""
        return CheckResult(ok=True, detail=f"shop {name}".strip() if name else "shop reachable")

    async def push_stock(self, ctx: ConnectorContext, push: StockPush) -> StockPushResult:
        params = {
            "request_id": push.reference,
            "skus": [
                {
                    "out_sku_id": item.sku,
                    "stock_num": max(item.available, 0),
                    "sale_price": item.price_fen,
                    "on_sale": item.active,
                    "version": item.version,
                }
                for item in push.items
            ],
        }
        answer = await self._api(ctx, "channels/ec/product/stock/batch_update", params)
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
            sku = wire.text(row, "out_sku_id")
            stock = row.get("stock_num")
            channel_available = stock if isinstance(stock, int) and not isinstance(stock, bool) else None
            code = row.get("errcode")
            if code == SUCCESS:
                answered[sku] = StockItemResult(sku=sku, status="ok", channel_available=channel_available)
                continue
            retryable = code in RETRYABLE_CODES
            answered[sku] = StockItemResult(
                sku=sku,
                status="failed" if retryable else "rejected",
                channel_available=channel_available,
                retryable=retryable,
                detail=f"{code}: {wire.text(row, 'errmsg')}"[:300],
            )
        return StockPushResult(items=wire.item_results(push.items, answered))

    async def pull_orders(self, ctx: ConnectorContext, cursor: str) -> OrderPage:
        cfg = _config(ctx.config)
        answer = await self._api(
            ctx, "channels/ec/order/list/get", {"next_key": cursor, "page_size": cfg.page_size}
        )
        if not answer.ok:
            raise wire.ChannelUnavailable(answer.detail, retryable=answer.retryable)
        assert answer.data is not None
        try:
            events = [_event(e) for e in wire.objects(answer.data, "events")]
        except BadCallback as exc:
            raise wire.ChannelUnavailable(f"unreadable order page: {exc.reason}", retryable=True) from None
        next_key = wire.text(answer.data, "next_key") or cursor
        return OrderPage(events=events, next_cursor=next_key, has_more=answer.data.get("has_more") is True)

    async def parse_callback(self, ctx: ConnectorContext, request: CallbackRequest) -> ChannelEvent:
        cfg = _config(ctx.config)
        body = wire.body_text(request.body)
        timestamp = request.query.get("timestamp", "")
        nonce = request.query.get("nonce", "")
        if not nonce or not wire.verify(
            cfg.callback_token, f"{timestamp}\n{nonce}\n{body}", request.query.get("msg_signature", "")
        ):
            raise BadCallback("bad signature", signature=True)
        wire.check_fresh(timestamp, ctx.now(), cfg.callback_tolerance_seconds)
        message = wire.json_object(body)
        if wire.text(message, "ToUserName") not in ("", cfg.appid):
            raise BadCallback("event for another app", signature=True)
        return _event(message)

    def callback_reply(
        self, ctx: ConnectorContext, event: ChannelEvent | None, outcome: CallbackOutcome
    ) -> CallbackReply:
        """The platform wants the plain text ``success`` for any event received (else it pushes again)."""
        if event is None:
            return CallbackReply(status=400, body=b"invalid request", content_type="text/plain")
        return CallbackReply(status=200, body=b"success", content_type="text/plain")

    async def deliver_codes(self, ctx: ConnectorContext, delivery: CodeDelivery) -> CallResult:
        params = {
            "order_id": delivery.order_id,
            "line_id": delivery.line_id,
            "request_id": delivery.reference,
            "codes": [
                {"code": c.code, "pin": c.pin, "expire_time": wire.to_epoch(c.expires_at)}
                for c in delivery.codes
            ],
        }
        answer = await self._api(ctx, "channels/ec/order/deliver/virtual", params)
        if not answer.ok:
            return wire.call_failed(answer.detail, retryable=answer.retryable)
        assert answer.data is not None
        return CallResult(status="ok", channel_ref=wire.text(answer.data, "delivery_id"))

    async def report_redemption(self, ctx: ConnectorContext, redemption: ChannelRedemption) -> CallResult:
        """The shop does not verify codes: nothing to report."""
        return CallResult(
            status="rejected", detail="the social shop does not verify codes (no redemption_sync)"
        )

    async def fetch_statement(self, ctx: ConnectorContext, request: StatementRequest) -> StatementPage:
        cfg = _config(ctx.config)
        params = {
            "start_time": wire.to_epoch(request.start),
            "end_time": wire.to_epoch(request.end),
            "next_key": request.cursor,
            "page_size": cfg.page_size,
        }
        answer = await self._api(ctx, "channels/ec/funds/flow/list", params)
        if not answer.ok:
            raise wire.ChannelUnavailable(answer.detail, retryable=answer.retryable)
        assert answer.data is not None
        try:
            lines = [_flow(row) for row in wire.objects(answer.data, "flows")]
        except BadCallback as exc:
            raise wire.ChannelUnavailable(
                f"unreadable funds flow page: {exc.reason}", retryable=True
            ) from None
        return StatementPage(
            lines=lines,
            next_cursor=wire.text(answer.data, "next_key"),
            has_more=answer.data.get("has_more") is True,
        )

    # -- token and calls -------------------------------------------------------------------------------

    async def _token(self, ctx: ConnectorContext, cfg: SocialConfig) -> wire.Answer:
        """``data`` is ``{"access_token": ...}``: from the cache, or fetched (``stable_token``)."""
        now = ctx.now()
        cached = self.tokens.get(cfg, now)
        if cached:
            return wire.Answer({"access_token": cached})
        body = wire.dumps({"grant_type": "client_credential", "appid": cfg.appid, "secret": cfg.secret})
        url = f"{cfg.base_url.rstrip('/')}/cgi-bin/stable_token"
        answer = await wire.send_json(ctx.http, url, body, {}, seconds=cfg.timeout_seconds)
        if not answer.ok:
            return answer
        assert answer.data is not None
        token = wire.text(answer.data, "access_token")
        expires_in = answer.data.get("expires_in")
        if not token or not isinstance(expires_in, int) or isinstance(expires_in, bool):
            code = answer.data.get("errcode")
            retryable = code in RETRYABLE_CODES or not isinstance(code, int)
            return wire.Answer(
                None, answer.http_status, retryable=retryable, detail=f"no access token ({code})"
            )
        self.tokens.put(cfg, token, now + dt.timedelta(seconds=expires_in) - TOKEN_MARGIN)
        return wire.Answer({"access_token": token})

    async def _api(self, ctx: ConnectorContext, path: str, params: dict[str, Any]) -> wire.Answer:
        """One call with the access token; an expired token is fetched again and the call made once more."""
        cfg = _config(ctx.config)
        for attempt in (1, 2):
            token = await self._token(ctx, cfg)
            if not token.ok:
                ctx.log.warning("social_token_failed", detail=token.detail)
                return token
            assert token.data is not None
            url = f"{cfg.base_url.rstrip('/')}/{path}"
            headers = {"Authorization": f"Bearer {token.data['access_token']}"}
            answer = await wire.send_json(
                ctx.http, url, wire.dumps(params), headers, seconds=cfg.timeout_seconds
            )
            if not answer.ok:
                ctx.log.warning("social_call_failed", path=path, detail=answer.detail)
                return answer
            assert answer.data is not None
            code = answer.data.get("errcode", SUCCESS)
            if code == SUCCESS:
                return answer
            if code in TOKEN_CODES:
                self.tokens.drop(cfg)
                if attempt == 1:
                    continue
                return wire.Answer(
                    None, answer.http_status, retryable=True, detail="channel refused a fresh access token"
                )
            if not isinstance(code, int) or isinstance(code, bool):
                return wire.Answer(
                    None, answer.http_status, retryable=True, detail="channel answered a bad errcode"
                )
            ctx.log.warning("social_call_refused", path=path, code=code)
            detail = f"channel refused {path}: {code} {wire.text(answer.data, 'errmsg')}".strip()
            return wire.Answer(
                None, answer.http_status, retryable=code in RETRYABLE_CODES, detail=detail[:300]
            )
        return wire.Answer(None, retryable=True, detail="channel refused a fresh access token")


def _config(config: Any) -> SocialConfig:
    return config if isinstance(config, SocialConfig) else SocialConfig()


def _event(message: dict[str, Any]) -> ChannelEvent:
    """A pushed (or listed) event as a :class:`ChannelEvent`; :class:`BadCallback` when malformed."""
    msg_id = wire.required(message, "MsgId")
    kind = EVENTS.get(wire.text(message, "Event"))
    if kind is None:
        raise BadCallback(f"unknown event {wire.text(message, 'Event')[:40]!r}")
    occurred = wire.epoch(message, "CreateTime")
    assert occurred is not None
    if kind == "order.paid":
        order = _order(wire.mapping(message, "order_info"))
        return ChannelEvent(message_id=msg_id, type="order.paid", occurred_at=occurred, order=order)
    if kind == "ping":
        return ChannelEvent(message_id=msg_id, type="ping", occurred_at=occurred)
    info = wire.mapping(message, "aftersale_info")
    refund = RefundNotice(
        order_id=wire.required(info, "order_id"),
        line_id=wire.required(info, "line_id"),
        refund_id=wire.required(info, "aftersale_id"),
        quantity=wire.positive(info, "count"),
        amount_fen=wire.integer(info, "refund_amount", 0),
        reason=wire.text(info, "reason")[:200],
    )
    if kind == "order.cancelled":
        return ChannelEvent(message_id=msg_id, type="order.cancelled", occurred_at=occurred, refund=refund)
    return ChannelEvent(message_id=msg_id, type="order.refunded", occurred_at=occurred, refund=refund)


def _order(info: dict[str, Any]) -> ChannelOrder:
    source = wire.mapping(info, "source_info")
    lines = [
        OrderLine(
            line_id=wire.required(p, "line_id"),
            sku=wire.required(p, "out_sku_id"),
            quantity=wire.positive(p, "sku_cnt"),
            unit_price_fen=wire.integer(p, "sale_price"),
        )
        for p in wire.objects(info, "products")
    ]
    if not lines:
        raise BadCallback("order without products")
    paid = wire.epoch(info, "pay_time")
    assert paid is not None
    return ChannelOrder(
        order_id=wire.required(info, "order_id"),
        placed_at=paid,
        lines=lines,
        buyer=Buyer(
            id=wire.text(info, "openid"),
            phone=wire.text(info, "phone"),
            ip=wire.text(info, "client_ip"),
            referrer=wire.text(source, "sharer_openid"),
            kol=wire.text(source, "finder_id") or wire.text(source, "talent_id"),
        ),
        deliver_by=wire.epoch(info, "deliver_deadline", required=False),
    )


def _flow(row: dict[str, Any]) -> StatementLine:
    kind = wire.text(row, "flow_type")
    if kind not in FLOW_KINDS:
        raise BadCallback(f"unknown flow_type {kind[:40]!r}")
    occurred = wire.epoch(row, "flow_time")
    assert occurred is not None
    return StatementLine(
        line_id=wire.required(row, "flow_id"),
        order_id=wire.text(row, "order_id"),
        order_line_id=wire.text(row, "line_id"),
        kind=kind,  # type: ignore[arg-type]  # checked against FLOW_KINDS above
        amount_fen=wire.integer(row, "amount"),
        commission_fen=wire.integer(row, "commission", 0),
        occurred_at=occurred,
        description=wire.text(row, "remark")[:200],
    )


CONNECTOR = SocialChannel()


@hookimpl
def kaquan_connectors() -> list[SocialChannel]:
    return [CONNECTOR]
