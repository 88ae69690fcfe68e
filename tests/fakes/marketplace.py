"""The fake marketplace open platform of docs/connectors/ecommerce.md (OAuth2 shop authorisation included)."""

from __future__ import annotations

import base64
import hmac
import secrets
import urllib.parse
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


class FakeMarketplace(FakeChannelServer):
    """The marketplace open platform of ``docs/connectors/ecommerce.md`` (OAuth2 shop authorisation included)."""

    def __init__(self, app_key: str = "kaquan-app", app_secret: str = "mk-secret", **kw: Any) -> None:
        super().__init__(**kw)
        self.app_key = app_key
        self.app_secret = app_secret
        self.shop_id = "shop-1001"
        self.codes: dict[str, dict[str, str]] = {}
        self.access_tokens: dict[str, float] = {}
        self.refresh_tokens: dict[str, str] = {}
        self.token_lifetime = 7200

    def issue_token(self) -> str:
        """An access token as if the shop had authorised the app (for tests past the OAuth flow)."""
        token = "at-" + secrets.token_hex(12)
        with self.lock:
            self.access_tokens[token] = self.clock() + self.token_lifetime
        return token

    def route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Reply:
        if path == "/oauth2/authorize":
            return self._authorize(query)
        if path == "/oauth2/access_token":
            return self._token(headers, body)
        if not path.startswith("/api/"):
            return json_reply({"error": "not found"}, 404)
        api = path.removeprefix("/api/")
        timestamp = headers.get("x-timestamp", "")
        expected = hmac_hex(self.app_secret, f"{self.app_key}\n{api}\n{timestamp}\n".encode() + body)
        if headers.get("x-app-key") != self.app_key or not hmac.compare_digest(
            expected, headers.get("x-sign", "")
        ):
            return json_reply({"code": 40003, "msg": "invalid sign", "sub_code": "isv.invalid-sign"})
        expires = self.access_tokens.get(headers.get("x-access-token", ""))
        if expires is None or expires < self.clock():
            return json_reply({"code": 30001, "msg": "access token invalid", "sub_code": "isv.token-invalid"})
        handler = {
            "shop.info": self._shop_info,
            "sku.stock.batch_update": self._stock,
            "message.increment.list": self._messages,
            "order.virtual.deliver": self._deliver,
            "bill.list": self._bills,
        }.get(api)
        if handler is None:
            return _mk_error(40004, "isv.method-not-found", "no such method")
        return handler(parse_json(body))

    # OAuth2 ----------------------------------------------------------------------------------------

    def _authorize(self, query: dict[str, str]) -> Reply:
        """The shop owner approves at once: redirect back with a code (and the state)."""
        if query.get("client_id") != self.app_key or query.get("response_type") != "code":
            return json_reply({"error": "invalid_request"}, 400)
        code = "code-" + secrets.token_hex(8)
        with self.lock:
            self.codes[code] = {"redirect_uri": query.get("redirect_uri", "")}
        params = {"code": code, "state": query.get("state", "")}
        target = query.get("redirect_uri", "") + ("&" if "?" in query.get("redirect_uri", "") else "?")
        return 302, {"Location": target + urllib.parse.urlencode(params)}, b""

    def _token(self, headers: dict[str, str], body: bytes) -> Reply:
        form = dict(urllib.parse.parse_qsl(body.decode()))
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        auth = headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            decoded = base64.b64decode(auth[6:]).decode()
            client_id, _, client_secret = decoded.partition(":")
            client_id, client_secret = urllib.parse.unquote(client_id), urllib.parse.unquote(client_secret)
        if client_id != self.app_key or client_secret != self.app_secret:
            return json_reply({"error": "invalid_client"}, 401)
        grant = form.get("grant_type")
        with self.lock:
            if grant == "authorization_code":
                issued = self.codes.pop(form.get("code", ""), None)
                granted = issued is not None and issued["redirect_uri"] == form.get("redirect_uri", "")
            elif grant == "refresh_token":
                granted = self.refresh_tokens.pop(form.get("refresh_token", ""), None) is not None
            else:
                granted = False
        if not granted:
            return json_reply({"error": "invalid_grant"}, 400)
        access = self.issue_token()
        refresh = "rt-" + secrets.token_hex(12)
        with self.lock:
            self.refresh_tokens[refresh] = access
        token = {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": self.token_lifetime,
            "token_type": "Bearer",
            "shop_id": self.shop_id,
        }
        return json_reply(token)

    # API -------------------------------------------------------------------------------------------

    def _shop_info(self, params: dict[str, Any]) -> Reply:
        return _mk_ok({"shop_id": self.shop_id, "shop_name": "卡券旗舰店"})

    def _stock(self, params: dict[str, Any]) -> Reply:
        results = []
        for item in params["items"]:
            known, stock = self.apply_stock(
                item["sku_id"],
                int(item["stock_num"]),
                int(item["price"]),
                bool(item["on_sale"]),
                int(item["version"]),
            )
            if known:
                results.append({"sku_id": item["sku_id"], "success": True, "stock_num": stock})
            else:
                results.append(
                    {
                        "sku_id": item["sku_id"],
                        "success": False,
                        "err_code": 40004,
                        "err_msg": "sku not found",
                    }
                )
        return _mk_ok({"results": results})

    def _messages(self, params: dict[str, Any]) -> Reply:
        messages, next_cursor, more = self.page(str(params.get("cursor", "")), int(params.get("size", 100)))
        return _mk_ok({"messages": messages, "next_cursor": next_cursor, "has_more": more})

    def _deliver(self, params: dict[str, Any]) -> Reply:
        cards = [{"code": c["card_no"], "pin": c.get("card_pwd", "")} for c in params["cards"]]
        outcome = self.record_delivery(params["order_id"], params["line_id"], params["request_id"], cards)
        errors = {
            "unknown_order": "isv.order-not-found",
            "order_closed": "isv.order-closed",
            "already_delivered": "isv.already-delivered",
            "wrong_count": "isv.card-count-mismatch",
        }
        if outcome in errors:
            return _mk_error(40004, errors[outcome], outcome.replace("_", " "))
        return _mk_ok({"delivery_id": outcome, "status": "delivered"})

    def _bills(self, params: dict[str, Any]) -> Reply:
        bills, cursor, more = self.bill_page(
            int(params["start_time"]),
            int(params["end_time"]),
            str(params.get("cursor", "")),
            int(params.get("size", 100)),
        )
        rows = [
            {
                "bill_id": b["bill_id"],
                "order_id": b["order_id"],
                "line_id": b["line_id"],
                "type": b["kind"],
                "amount": b["amount"],
                "commission": b["commission"],
                "time": b["time"],
            }
            for b in bills
        ]
        return _mk_ok({"bills": rows, "next_cursor": cursor, "has_more": more})

    # the merchant's side: orders and messages ---------------------------------------------------------

    def place_order(
        self,
        sku: str,
        quantity: int = 1,
        price: int = 9000,
        *,
        buyer_id: str = "buyer-1",
        phone: str = "",
        ip: str = "",
    ) -> dict[str, Any]:
        """A paid order for ``sku``: its ``trade.paid`` message (in the feed; :meth:`callback` signs it)."""
        order = self.new_order([(sku, quantity, price)], {"buyer_id": buyer_id, "phone": phone, "ip": ip})
        data = {
            "order_id": order.order_id,
            "paid_at": order.paid_at,
            "deliver_deadline": order.paid_at + 3600,
            "buyer": order.buyer,
            "items": [
                {"line_id": lid, "sku_id": ln["sku"], "num": ln["quantity"], "price": ln["price"]}
                for lid, ln in order.lines.items()
            ],
        }
        return self.add_message(
            {"msg_id": self.next_id("msg"), "tag": "trade.paid", "created": self.now(), "data": data}
        )

    def refund(self, order_id: str, quantity: int | None = None, *, cancel: bool = False) -> dict[str, Any]:
        """Refund (or cancel) the first line of an order: its message."""
        order = self.orders[order_id]
        line_id, line = next(iter(order.lines.items()))
        count = quantity or line["quantity"]
        amount = self.record_refund(order_id, line_id, count)
        if cancel:
            order.closed = True
        data = {
            "order_id": order_id,
            "line_id": line_id,
            "refund_id": self.next_id("rf"),
            "num": count,
            "refund_amount": amount,
        }
        tag = "trade.cancelled" if cancel else "trade.refund_success"
        return self.add_message(
            {"msg_id": self.next_id("msg"), "tag": tag, "created": self.now(), "data": data}
        )

    def callback(self, message: dict[str, Any], *, timestamp: int | None = None) -> SignedCall:
        """The signed push of ``message`` to the merchant's callback URL."""
        call = self.sign(dumps(public(message)), timestamp=timestamp)
        call.message = message
        return call

    def sign(self, body: bytes, *, timestamp: int | None = None) -> SignedCall:
        """A push carrying ``body`` as is, signed as the marketplace signs."""
        ts = str(self.now() if timestamp is None else timestamp)
        sign = hmac_hex(self.app_secret, f"{self.app_key}\n{ts}\n".encode() + body)
        headers = {
            "Content-Type": "application/json",
            "X-App-Key": self.app_key,
            "X-Timestamp": ts,
            "X-Sign": sign,
        }
        return SignedCall(headers=headers, query={}, body=body, message={})


def _mk_ok(data: dict[str, Any]) -> Reply:
    return json_reply({"code": 10000, "msg": "success", "data": data})


def _mk_error(code: int, sub_code: str, sub_msg: str) -> Reply:
    return json_reply({"code": code, "msg": "business error", "sub_code": sub_code, "sub_msg": sub_msg})
