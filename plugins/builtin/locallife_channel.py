"""The built-in ``locallife`` sales channel: group-buy vouchers on a local-life platform with third-party codes.

It follows the JSON contract in ``docs/connectors/locallife.md``, modelled on the local-life platforms'
三方码 flow (Douyin life services, Meituan group buying): when a buyer pays, the platform calls the
merchant's issue endpoint (SPI) and waits — at most 8 seconds — for the codes in the answer; it retries a
call that failed up to six times over ten minutes, with the same ``msg_id``; it asks for the codes' state
(``query_code``); it tells the merchant about codes it verified itself (``verify_notify``) and about refunds,
which the merchant may refuse for a code already redeemed (``refund_notify``); the merchant reports codes
redeemed in its own stores (``certificate/verify``), so a code is redeemed on one side only. Requests and
SPI calls are signed with HMAC-SHA256 under the client secret. It imports only the partner SDK.
"""

from __future__ import annotations

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
    StockItemResult,
    StockPush,
    StockPushResult,
    hookimpl,
)
from plugins.builtin import _channel_http as wire

#: ``error_code`` of success; codes worth retrying (system busy, rate limited); a code already verified.
SUCCESS = 0
RETRYABLE_CODES = frozenset({2100004, 2100005})
ALREADY_VERIFIED = 2119001
#: The answer that makes the platform call the issue endpoint again (kaquan is still issuing).
PROCESSING = 2100004

SPI_TYPES: dict[str, str] = {
    "issue_code": "code.issue",
    "query_code": "code.query",
    "verify_notify": "code.redeemed",
    "refund_notify": "order.refunded",
    "ping": "ping",
}

#: Code states on the wire (``query_code``): 1 unused, 2 verified, 3 voided (refunded).
CODE_STATES: dict[str, int] = {"issued": 1, "redeemed": 2, "voided": 3}
BILL_KINDS: dict[int, Literal["sale", "refund", "commission", "adjustment"]] = {
    1: "sale",
    2: "refund",
    3: "commission",
    4: "adjustment",
}


class LocallifeConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The merchant's app on the local-life open platform.

    ``client_key`` / ``client_secret``: the app's credentials (the secret signs requests and verifies the
    platform's SPI calls); ``account_id``: the merchant account the vouchers are sold under; ``poi_id``:
    the default store reported with a redemption when kaquan does not name one.
    """

    base_url: str = "https://open.locallife.example"
    client_key: str = "kaquan-client"
    client_secret: Secret = ""
    account_id: str = ""
    poi_id: str = ""
    timeout_seconds: float = 5.0
    callback_tolerance_seconds: int = wire.DEFAULT_TOLERANCE


class LocallifeChannel:
    """Group-buy vouchers with third-party codes: issue and query answered in the SPI reply, redemption both ways."""

    info = ConnectorInfo(
        id="locallife",
        kind="sales_channel",
        display_name="Local-life group buying (third-party codes)",
        display_name_zh="本地生活团购（三方码）",
        description="Sells vouchers on a local-life platform: the platform asks kaquan for codes when a buyer "
        "pays (answered within its 8 s limit), queries them, and redemptions and refunds are kept in step.",
        description_zh="在本地生活平台售卖团购券：买家付款时平台向本系统取码（8 秒内应答）并可查询，核销与退款双向同步。",
        config=LocallifeConfig,
        capabilities=frozenset(
            {"stock_push", "callbacks", "third_party_codes", "redemption_sync", "refunds", "statements"}
        ),
        version="1",
    )

    async def check(self, ctx: ConnectorContext) -> CheckResult:
        cfg = _config(ctx.config)
        answer = await self._api(ctx, "account/check", {"account_id": cfg.account_id})
        if not answer.ok:
            return CheckResult(ok=False, detail=answer.detail)
        assert answer.data is not None
        name = wire.text(answer.data, "account_name")
        return CheckResult(ok=True, detail=f"merchant {name}".strip() if name else "merchant reachable")

    async def push_stock(self, ctx: ConnectorContext, push: StockPush) -> StockPushResult:
        cfg = _config(ctx.config)
        params = {
            "account_id": cfg.account_id,
            "request_id": push.reference,
            "items": [
                {
                    "out_sku_id": item.sku,
                    "stock_qty": max(item.available, 0),
                    "price": item.price_fen,
                    "on_sale": item.active,
                    "version": item.version,
                }
                for item in push.items
            ],
        }
        answer = await self._api(ctx, "goods/stock/sync", params)
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
            qty = row.get("stock_qty")
            channel_available = qty if isinstance(qty, int) and not isinstance(qty, bool) else None
            code = row.get("error_code")
            if code == SUCCESS:
                answered[sku] = StockItemResult(sku=sku, status="ok", channel_available=channel_available)
                continue
            retryable = code in RETRYABLE_CODES
            answered[sku] = StockItemResult(
                sku=sku,
                status="failed" if retryable else "rejected",
                channel_available=channel_available,
                retryable=retryable,
                detail=f"{code}: {wire.text(row, 'description')}"[:300],
            )
        return StockPushResult(items=wire.item_results(push.items, answered))

    async def pull_orders(self, ctx: ConnectorContext, cursor: str) -> OrderPage:
        """The platform pushes every order through the issue SPI (and retries it): there is no feed to pull."""
        return OrderPage(events=[], next_cursor=cursor, has_more=False)

    # -- SPI calls from the platform -----------------------------------------------------------------

    async def parse_callback(self, ctx: ConnectorContext, request: CallbackRequest) -> ChannelEvent:
        cfg = _config(ctx.config)
        body = wire.body_text(request.body)
        timestamp = request.headers.get("x-life-timestamp", "")
        if request.headers.get("x-life-client-key", "") != cfg.client_key:
            raise BadCallback("call for another client", signature=True)
        if not wire.verify(cfg.client_secret, f"{timestamp}\n{body}", request.headers.get("x-life-sign", "")):
            raise BadCallback("bad signature", signature=True)
        wire.check_fresh(timestamp, ctx.now(), cfg.callback_tolerance_seconds)
        return _event(wire.json_object(body))

    def callback_reply(
        self, ctx: ConnectorContext, event: ChannelEvent | None, outcome: CallbackOutcome
    ) -> CallbackReply:
        if event is None:
            return _reply({"error_code": 2190008, "description": outcome.reason or "refused"}, status=400)
        if event.type == "code.issue":
            return _issue_reply(outcome)
        if event.type == "code.query":
            codes = [_wire_code(c) for c in outcome.codes]
            if outcome.status == "refused":
                return _reply({"error_code": 2119404, "description": outcome.reason or "unknown order"})
            return _reply({"error_code": SUCCESS, "description": "success", "codes": codes})
        if outcome.status == "refused":
            # verify_notify: the platform undoes its verification; refund_notify: the refund is refused.
            return _reply({"error_code": SUCCESS, "description": outcome.reason or "refused", "result": 2})
        return _reply({"error_code": SUCCESS, "description": "success", "result": 1})

    # -- calls to the platform -----------------------------------------------------------------------

    async def deliver_codes(self, ctx: ConnectorContext, delivery: CodeDelivery) -> CallResult:
        """Codes go to the platform in the issue reply, never by a separate delivery."""
        return CallResult(
            status="rejected", detail="codes are returned in the issue_code reply (no delivery)"
        )

    async def report_redemption(self, ctx: ConnectorContext, redemption: ChannelRedemption) -> CallResult:
        cfg = _config(ctx.config)
        params = {
            "account_id": cfg.account_id,
            "verify_token": redemption.reference,
            "order_id": redemption.order_id,
            "codes": [redemption.code],
            "verify_time": wire.to_epoch(redemption.redeemed_at),
            "poi_id": redemption.store or cfg.poi_id,
        }
        answer = await self._api(ctx, "fulfilment/certificate/verify", params)
        if not answer.ok:
            return wire.call_failed(answer.detail, retryable=answer.retryable)
        assert answer.data is not None
        try:
            results = wire.objects(answer.data, "verify_results")
        except BadCallback:
            results = []
        mine = [r for r in results if wire.text(r, "code") == redemption.code]
        if not mine:
            return wire.call_failed("channel did not answer for the code", retryable=True)
        code = mine[0].get("result")
        if code == SUCCESS:
            return CallResult(status="ok", channel_ref=wire.text(mine[0], "verify_id"))
        if code == ALREADY_VERIFIED:
            return CallResult(status="rejected", detail="the code was already verified on the channel")
        return wire.call_failed(
            f"channel refused the verification: {code}", retryable=code in RETRYABLE_CODES
        )

    async def fetch_statement(self, ctx: ConnectorContext, request: StatementRequest) -> StatementPage:
        cfg = _config(ctx.config)
        params = {
            "account_id": cfg.account_id,
            "start_time": wire.to_epoch(request.start),
            "end_time": wire.to_epoch(request.end),
            "cursor": request.cursor,
        }
        answer = await self._api(ctx, "settle/bill/query", params)
        if not answer.ok:
            raise wire.ChannelUnavailable(answer.detail, retryable=answer.retryable)
        assert answer.data is not None
        try:
            lines = [_bill(row) for row in wire.objects(answer.data, "bills")]
        except BadCallback as exc:
            raise wire.ChannelUnavailable(f"unreadable bill page: {exc.reason}", retryable=True) from None
        return StatementPage(
            lines=lines,
            next_cursor=wire.text(answer.data, "cursor"),
            has_more=answer.data.get("has_more") is True,
        )

    async def _api(self, ctx: ConnectorContext, path: str, params: dict[str, Any]) -> wire.Answer:
        """One signed call; ``data`` is the answer's ``data`` object when its ``error_code`` is 0."""
        cfg = _config(ctx.config)
        body = wire.dumps(params)
        timestamp = str(int(ctx.now().timestamp()))
        full_path = f"/goodlife/v1/{path}"
        headers = {
            "X-Life-Client-Key": cfg.client_key,
            "X-Life-Timestamp": timestamp,
            "X-Life-Sign": wire.sign(cfg.client_secret, f"{timestamp}\n{full_path}\n".encode() + body),
        }
        url = cfg.base_url.rstrip("/") + full_path
        answer = await wire.send_json(ctx.http, url, body, headers, seconds=cfg.timeout_seconds)
        if not answer.ok:
            ctx.log.warning("locallife_call_failed", path=path, detail=answer.detail)
            return answer
        assert answer.data is not None
        data = answer.data.get("data")
        if not isinstance(data, dict) or isinstance(data.get("error_code"), bool):
            return wire.Answer(
                None, answer.http_status, retryable=True, detail="channel answered without data"
            )
        code = data.get("error_code")
        if code == SUCCESS:
            return wire.Answer(data, http_status=answer.http_status)
        if not isinstance(code, int):
            return wire.Answer(
                None, answer.http_status, retryable=True, detail="channel answered without a code"
            )
        ctx.log.warning("locallife_call_refused", path=path, code=code)
        detail = f"channel refused {path}: {code} {wire.text(data, 'description')}".strip()
        return wire.Answer(None, answer.http_status, retryable=code in RETRYABLE_CODES, detail=detail[:300])


def _config(config: Any) -> LocallifeConfig:
    return config if isinstance(config, LocallifeConfig) else LocallifeConfig()


def _reply(data: dict[str, Any], status: int = 200) -> CallbackReply:
    return CallbackReply(status=status, body=wire.dumps({"data": data}))


def _issue_reply(outcome: CallbackOutcome) -> CallbackReply:
    """Codes in the answer (``result`` 1); a refusal (``result`` 2: the platform refunds the buyer); a repeat
    without codes asks the platform to call again (kaquan is still issuing)."""
    if outcome.codes:
        codes = [_wire_code(c) for c in outcome.codes]
        return _reply({"error_code": SUCCESS, "description": "success", "result": 1, "codes": codes})
    if outcome.status == "refused":
        return _reply({"error_code": SUCCESS, "description": outcome.reason or "refused", "result": 2})
    return _reply({"error_code": PROCESSING, "description": "issuing, call again"})


def _wire_code(code: IssuedCode) -> dict[str, Any]:
    return {
        "line_id": code.line_id,
        "code": code.code,
        "pin": code.pin,
        "expire_time": wire.to_epoch(code.expires_at),
        "status": CODE_STATES[code.state],
    }


def _event(message: dict[str, Any]) -> ChannelEvent:
    """An SPI call as a :class:`ChannelEvent`; :class:`BadCallback` when malformed."""
    msg_id = wire.required(message, "msg_id")
    kind = SPI_TYPES.get(wire.text(message, "type"))
    if kind is None:
        raise BadCallback(f"unknown SPI type {wire.text(message, 'type')[:40]!r}")
    occurred = wire.epoch(message, "create_time")
    assert occurred is not None
    content = wire.mapping(message, "content")
    if kind == "code.issue":
        issue = IssueRequest(order=_order(content))
        return ChannelEvent(message_id=msg_id, type="code.issue", occurred_at=occurred, issue=issue)
    if kind == "code.query":
        query = CodeQuery(order_id=wire.required(content, "order_id"))
        return ChannelEvent(message_id=msg_id, type="code.query", occurred_at=occurred, query=query)
    if kind == "code.redeemed":
        verified = wire.epoch(content, "verify_time")
        assert verified is not None
        redemption = ChannelRedemption(
            order_id=wire.required(content, "order_id"),
            code=wire.required(content, "code"),
            redeemed_at=verified,
            reference=wire.required(content, "verify_id"),
            store=wire.text(content, "poi_id"),
        )
        return ChannelEvent(
            message_id=msg_id, type="code.redeemed", occurred_at=occurred, redemption=redemption
        )
    if kind == "order.refunded":
        refund = RefundNotice(
            order_id=wire.required(content, "order_id"),
            line_id=wire.required(content, "line_id"),
            refund_id=wire.required(content, "refund_id"),
            quantity=wire.positive(content, "count"),
            amount_fen=wire.integer(content, "refund_amount", 0),
            reason=wire.text(content, "reason")[:200],
        )
        return ChannelEvent(message_id=msg_id, type="order.refunded", occurred_at=occurred, refund=refund)
    return ChannelEvent(message_id=msg_id, type="ping", occurred_at=occurred)


def _order(content: dict[str, Any]) -> ChannelOrder:
    buyer = wire.mapping(content, "buyer")
    order_id = wire.required(content, "order_id")
    paid = wire.epoch(content, "pay_time")
    assert paid is not None
    line = OrderLine(
        line_id=wire.text(content, "line_id") or f"{order_id}-1",
        sku=wire.required(content, "out_sku_id"),
        quantity=wire.positive(content, "count"),
        unit_price_fen=wire.integer(content, "unit_price"),
    )
    return ChannelOrder(
        order_id=order_id,
        placed_at=paid,
        lines=[line],
        buyer=Buyer(
            id=wire.text(buyer, "open_id"), phone=wire.text(buyer, "phone"), ip=wire.text(buyer, "ip")
        ),
    )


def _bill(row: dict[str, Any]) -> StatementLine:
    kind = BILL_KINDS.get(row.get("bill_type", 0) if isinstance(row.get("bill_type"), int) else 0)
    if kind is None:
        raise BadCallback("unknown bill_type")
    occurred = wire.epoch(row, "settle_time")
    assert occurred is not None
    return StatementLine(
        line_id=wire.required(row, "bill_id"),
        order_id=wire.text(row, "order_id"),
        order_line_id=wire.text(row, "line_id"),
        kind=kind,
        amount_fen=wire.integer(row, "amount"),
        commission_fen=wire.integer(row, "commission", 0),
        occurred_at=occurred,
        description=wire.text(row, "remark")[:200],
    )


CONNECTOR = LocallifeChannel()


@hookimpl
def kaquan_connectors() -> list[LocallifeChannel]:
    return [CONNECTOR]
