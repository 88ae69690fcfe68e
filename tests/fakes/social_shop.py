"""The fake social shop platform of docs/connectors/social.md: app access tokens, signed event pushes."""

from __future__ import annotations

import secrets
from typing import Any

from tests.fakes._server import (
    FakeChannelServer,
    Reply,
    SignedCall,
    dumps,
    hmac_hex,
    json_reply,
    parse_json,
    public,
)


class FakeSocialShop(FakeChannelServer):
    """The social shop platform of ``docs/connectors/social.md``: app access tokens, signed event pushes."""

    def __init__(
        self,
        appid: str = "wx-kaquan",
        secret: str = "so-secret",
        callback_token: str = "so-callback",
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.appid = appid
        self.secret = secret
        self.callback_token = callback_token
        self.tokens: dict[str, float] = {}
        self.tokens_issued = 0

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working (errcode 42001)."""
        with self.lock:
            self.tokens.clear()

    def route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Reply:
        if path == "/cgi-bin/stable_token":
            return self._token(parse_json(body))
        auth = headers.get("authorization", "")
        token = auth.removeprefix("Bearer ")
        with self.lock:
            expires = self.tokens.get(token)
        if expires is None or expires < self.clock():
            return json_reply({"errcode": 42001, "errmsg": "access_token expired"})
        handler = {
            "/channels/ec/basics/info/get": self._info,
            "/channels/ec/product/stock/batch_update": self._stock,
            "/channels/ec/order/list/get": self._orders,
            "/channels/ec/order/deliver/virtual": self._deliver,
            "/channels/ec/funds/flow/list": self._flows,
        }.get(path)
        if handler is None:
            return json_reply({"errcode": 40066, "errmsg": "invalid url"})
        return handler(parse_json(body))

    def _token(self, params: dict[str, Any]) -> Reply:
        if params.get("appid") != self.appid or params.get("secret") != self.secret:
            return json_reply({"errcode": 40125, "errmsg": "invalid appsecret"})
        token = "st-" + secrets.token_hex(12)
        with self.lock:
            self.tokens[token] = self.clock() + 7200
            self.tokens_issued += 1
        return json_reply({"access_token": token, "expires_in": 7200})

    def _info(self, params: dict[str, Any]) -> Reply:
        return json_reply(
            {"errcode": 0, "errmsg": "ok", "info": {"nickname": "卡券小店", "appid": self.appid}}
        )

    def _stock(self, params: dict[str, Any]) -> Reply:
        results = []
        for item in params["skus"]:
            known, stock = self.apply_stock(
                item["out_sku_id"],
                int(item["stock_num"]),
                int(item["sale_price"]),
                bool(item["on_sale"]),
                int(item["version"]),
            )
            results.append(
                {
                    "out_sku_id": item["out_sku_id"],
                    "errcode": 0 if known else 10020050,
                    "errmsg": "ok" if known else "sku not exist",
                    "stock_num": stock,
                }
            )
        return json_reply({"errcode": 0, "errmsg": "ok", "results": results})

    def _orders(self, params: dict[str, Any]) -> Reply:
        events, next_key, more = self.page(str(params.get("next_key", "")), int(params.get("page_size", 100)))
        return json_reply(
            {"errcode": 0, "errmsg": "ok", "events": events, "next_key": next_key, "has_more": more}
        )

    def _deliver(self, params: dict[str, Any]) -> Reply:
        outcome = self.record_delivery(
            params["order_id"], params["line_id"], params["request_id"], params["codes"]
        )
        errors = {
            "unknown_order": 10020001,
            "order_closed": 10020002,
            "already_delivered": 10020003,
            "wrong_count": 10020004,
        }
        if outcome in errors:
            return json_reply({"errcode": errors[outcome], "errmsg": outcome.replace("_", " ")})
        return json_reply({"errcode": 0, "errmsg": "ok", "delivery_id": outcome})

    def _flows(self, params: dict[str, Any]) -> Reply:
        bills, cursor, more = self.bill_page(
            int(params["start_time"]),
            int(params["end_time"]),
            str(params.get("next_key", "")),
            int(params.get("page_size", 100)),
        )
        rows = [
            {
                "flow_id": b["bill_id"],
                "order_id": b["order_id"],
                "line_id": b["line_id"],
                "flow_type": b["kind"],
                "amount": b["amount"],
                "commission": b["commission"],
                "flow_time": b["time"],
            }
            for b in bills
        ]
        return json_reply({"errcode": 0, "errmsg": "ok", "flows": rows, "next_key": cursor, "has_more": more})

    # the shop's side ---------------------------------------------------------------------------------

    def place_order(
        self,
        sku: str,
        quantity: int = 1,
        price: int = 1990,
        *,
        openid: str = "o-buyer-1",
        sharer: str = "",
        finder: str = "",
        talent: str = "",
        client_ip: str = "",
    ) -> dict[str, Any]:
        """A paid order (bought through ``sharer``'s link, attributed to creator ``finder``/``talent``)."""
        order = self.new_order([(sku, quantity, price)], {"openid": openid})
        info = {
            "order_id": order.order_id,
            "create_time": order.paid_at,
            "pay_time": order.paid_at,
            "deliver_deadline": order.paid_at + 48 * 3600,
            "openid": openid,
            "client_ip": client_ip,
            "products": [
                {
                    "line_id": lid,
                    "out_sku_id": ln["sku"],
                    "sku_cnt": ln["quantity"],
                    "sale_price": ln["price"],
                }
                for lid, ln in order.lines.items()
            ],
            "source_info": {"sharer_openid": sharer, "finder_id": finder, "talent_id": talent},
        }
        return self.add_message(self._event("channels_ec_order_pay", order_info=info))

    def refund(self, order_id: str, quantity: int | None = None, *, cancel: bool = False) -> dict[str, Any]:
        order = self.orders[order_id]
        line_id, line = next(iter(order.lines.items()))
        count = quantity or line["quantity"]
        amount = self.record_refund(order_id, line_id, count)
        if cancel:
            order.closed = True
        info = {
            "order_id": order_id,
            "line_id": line_id,
            "aftersale_id": self.next_id("as"),
            "count": count,
            "refund_amount": amount,
        }
        kind = "channels_ec_order_cancel" if cancel else "channels_ec_aftersale_success"
        return self.add_message(self._event(kind, aftersale_info=info))

    def _event(self, kind: str, **payload: Any) -> dict[str, Any]:
        return {
            "ToUserName": self.appid,
            "FromUserName": "platform",
            "CreateTime": self.now(),
            "MsgType": "event",
            "Event": kind,
            "MsgId": self.next_id("wxm"),
            **payload,
        }

    def callback(self, message: dict[str, Any], *, timestamp: int | None = None) -> SignedCall:
        """The signed push of ``message`` to the merchant's callback URL."""
        call = self.sign(dumps(public(message)), timestamp=timestamp)
        call.message = message
        return call

    def sign(self, body: bytes, *, timestamp: int | None = None) -> SignedCall:
        """A push carrying ``body`` as is, signed as the platform signs (query string)."""
        ts = str(self.now() if timestamp is None else timestamp)
        nonce = secrets.token_hex(6)
        signature = hmac_hex(self.callback_token, f"{ts}\n{nonce}\n".encode() + body)
        query = {"timestamp": ts, "nonce": nonce, "msg_signature": signature}
        return SignedCall(headers={"Content-Type": "application/json"}, query=query, body=body, message={})
