"""Fake channel servers for the built-in HTTP channel connectors: real HTTP on 127.0.0.1, a random port.

Each fake plays one platform of ``docs/connectors/<id>.md`` — it checks the signatures and tokens the contract
requires, keeps its own state (SKUs with their stock and version, orders, messages with a sequence, deliveries,
verifications, bills) and answers in the platform's JSON. Tests start one with ``FakeX().start()`` (a stdlib
``ThreadingHTTPServer`` in a daemon thread) and point the connector's ``base_url`` at ``fake.url``; the same
logic also answers an ``httpx.MockTransport`` (:meth:`FakeChannelServer.httpx_handler`).

Tests can make the next answers fail (:meth:`FakeChannelServer.fail_next`: an HTTP status, or a platform
error code), slow them down (:meth:`FakeChannelServer.delay_next`), place orders, refund them, verify codes
on the channel side, and build the signed callbacks (or SPI calls) the platform would send.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

Reply = tuple[int, dict[str, str], bytes]


def hmac_hex(secret: str, message: str | bytes) -> str:
    data = message.encode() if isinstance(message, str) else message
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def json_reply(data: Any, status: int = 200) -> Reply:
    return status, {"Content-Type": "application/json"}, dumps(data)


@dataclass
class SignedCall:
    """A callback (or SPI call) the platform sends: what ``CallbackRequest`` is built from."""

    headers: dict[str, str]
    query: dict[str, str]
    body: bytes
    message: dict[str, Any]

    def tampered(self) -> SignedCall:
        """The same call with one byte of the body changed after signing."""
        body = self.body.replace(b'"', b"'", 1) if b'"' in self.body else self.body + b" "
        return SignedCall(self.headers, self.query, body, self.message)

    def post(self, url: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """POST this call to ``url`` (kaquan's callback route); the HTTP status and body answered."""
        target = url + ("?" + urllib.parse.urlencode(self.query) if self.query else "")
        request = urllib.request.Request(target, data=self.body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()


@dataclass
class Sku:
    stock: int = 0
    price: int = 0
    on_sale: bool = True
    version: int = -1
    updates: int = 0


@dataclass
class Order:
    order_id: str
    lines: dict[str, dict[str, Any]]
    buyer: dict[str, Any]
    paid_at: int
    closed: bool = False
    refunded: dict[str, int] = field(default_factory=dict)


class FakeChannelServer:
    """What every fake shares: the HTTP server, injected failures and delays, SKUs, orders and messages."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.requests: list[tuple[str, str]] = []
        self.skus: dict[str, Sku] = {}
        self.known_skus: set[str] | None = None
        self.orders: dict[str, Order] = {}
        self.messages: list[dict[str, Any]] = []
        self.deliveries: dict[tuple[str, str], dict[str, Any]] = {}
        self.delivery_calls = 0
        self.bills: list[dict[str, Any]] = []
        self._failures: list[Reply] = []
        self._path_failures: dict[str, list[Reply]] = {}
        self._delays: list[float] = []
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> FakeChannelServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, out_headers, out = fake.handle(self.command, url.path, query, headers, body)
                self.send_response(status)
                for name, value in {"Content-Length": str(len(out)), **out_headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(out)

            do_GET = _serve
            do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return  # keep test output clean; requests are in fake.requests

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-channel", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeChannelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- failures --------------------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 500, body: bytes = b'{"error":"internal"}') -> None:
        """The next ``count`` requests get ``status`` with ``body`` (before any other check)."""
        with self.lock:
            self._failures.extend([(status, {"Content-Type": "application/json"}, body)] * count)

    def fail_next_with(self, data: dict[str, Any], count: int = 1) -> None:
        """The next ``count`` requests get HTTP 200 with the platform error ``data``."""
        with self.lock:
            self._failures.extend([json_reply(data)] * count)

    def fail_path(self, path: str, data: dict[str, Any], count: int = 1) -> None:
        """The next ``count`` requests to ``path`` get HTTP 200 with the platform error ``data``."""
        with self.lock:
            self._path_failures.setdefault(path, []).extend([json_reply(data)] * count)

    def delay_next(self, seconds: float, count: int = 1) -> None:
        """The next ``count`` requests are answered after ``seconds``."""
        with self.lock:
            self._delays.extend([seconds] * count)

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Reply:
        """Answer one request (from the HTTP server or the httpx handler)."""
        with self.lock:
            self.requests.append((method, path))
            delay = self._delays.pop(0) if self._delays else 0.0
            failure = self._failures.pop(0) if self._failures else None
            on_path = self._path_failures.get(path)
            if failure is None and on_path:
                failure = on_path.pop(0)
        if delay:
            time.sleep(delay)
        if failure is not None:
            return failure
        try:
            return self.route(method, path, query, headers, body)
        except (ValueError, KeyError, TypeError) as exc:
            return json_reply({"error": f"bad request: {type(exc).__name__}"}, 400)

    def route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Reply:
        raise NotImplementedError

    def httpx_handler(self) -> Callable[[httpx.Request], httpx.Response]:
        """An ``httpx.MockTransport`` handler answering with this fake's logic (no socket)."""

        def handler(request: httpx.Request) -> httpx.Response:
            query = dict(urllib.parse.parse_qsl(request.url.query.decode()))
            headers = {k.lower(): v for k, v in request.headers.items()}
            status, out_headers, out = self.handle(
                request.method, request.url.path, query, headers, request.content
            )
            return httpx.Response(status, headers=out_headers, content=out)

        return handler

    # -- shared state ----------------------------------------------------------------------------------

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def now(self) -> int:
        return int(self.clock())

    def apply_stock(
        self, sku_id: str, stock: int, price: int, on_sale: bool, version: int
    ) -> tuple[bool, int]:
        """Apply one SKU update unless its version is not newer; (known SKU, stock now on the channel)."""
        with self.lock:
            if self.known_skus is not None and sku_id not in self.known_skus:
                return False, 0
            sku = self.skus.setdefault(sku_id, Sku())
            if version > sku.version or version == 0:
                sku.stock, sku.price, sku.on_sale, sku.version = stock, price, on_sale, version
                sku.updates += 1
            return True, sku.stock

    def add_message(self, message: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            message["_seq"] = len(self.messages) + 1
            self.messages.append(message)
        return message

    def page(self, cursor: str, size: int) -> tuple[list[dict[str, Any]], str, bool]:
        """Messages after ``cursor`` (a sequence number), at most ``size``; never a gap or a repeat."""
        after = int(cursor) if cursor.isdigit() else 0
        with self.lock:
            rest = [m for m in self.messages if m["_seq"] > after]
        chosen = rest[: max(1, min(size, 100))]
        next_cursor = str(chosen[-1]["_seq"]) if chosen else str(after)
        return [_public(m) for m in chosen], next_cursor, len(rest) > len(chosen)

    def new_order(self, items: list[tuple[str, int, int]], buyer: dict[str, Any]) -> Order:
        """An order of ``(sku, quantity, unit price)`` items; it takes the channel's stock of each SKU."""
        order_id = self.next_id("ord")
        lines = {}
        for n, (sku_id, quantity, price) in enumerate(items, start=1):
            lines[f"{order_id}-{n}"] = {"sku": sku_id, "quantity": quantity, "price": price}
            with self.lock:
                sku = self.skus.setdefault(sku_id, Sku())
                sku.stock = max(sku.stock - quantity, 0)
        order = Order(order_id=order_id, lines=lines, buyer=buyer, paid_at=self.now())
        with self.lock:
            self.orders[order_id] = order
        return order

    def record_delivery(
        self, order_id: str, line_id: str, request_id: str, codes: list[dict[str, Any]]
    ) -> str:
        """Deliver once per line: the same ``request_id`` gets the same delivery; an error string otherwise."""
        with self.lock:
            self.delivery_calls += 1
            order = self.orders.get(order_id)
            if order is None or line_id not in order.lines:
                return "unknown_order"
            if order.closed or order.refunded.get(line_id):
                return "order_closed"
            line = order.lines[line_id]
            done = self.deliveries.get((order_id, line_id))
            if done is not None:
                return done["delivery_id"] if done["request_id"] == request_id else "already_delivered"
            if len(codes) != line["quantity"]:
                return "wrong_count"
            delivery_id = self.next_id("dlv")
            self.deliveries[(order_id, line_id)] = {
                "delivery_id": delivery_id,
                "request_id": request_id,
                "codes": codes,
            }
            amount = line["quantity"] * line["price"]
            self.bills.append(self._bill("sale", order_id, line_id, amount, amount * 5 // 100))
            return delivery_id

    def record_refund(self, order_id: str, line_id: str, quantity: int) -> int:
        with self.lock:
            order = self.orders[order_id]
            order.refunded[line_id] = order.refunded.get(line_id, 0) + quantity
            amount = quantity * order.lines[line_id]["price"]
            self.bills.append(self._bill("refund", order_id, line_id, -amount, 0))
            return amount

    def _bill(self, kind: str, order_id: str, line_id: str, amount: int, commission: int) -> dict[str, Any]:
        return {
            "bill_id": self.next_id("bill"),
            "order_id": order_id,
            "line_id": line_id,
            "kind": kind,
            "amount": amount,
            "commission": commission,
            "time": self.now(),
        }

    def bill_page(
        self, start: int, end: int, cursor: str, size: int
    ) -> tuple[list[dict[str, Any]], str, bool]:
        offset = int(cursor) if cursor.isdigit() else 0
        with self.lock:
            chosen = [b for b in self.bills if start <= b["time"] < end]
        page = chosen[offset : offset + size]
        more = offset + size < len(chosen)
        return page, str(offset + size) if more else "", more


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if not k.startswith("_")}


def _json(body: bytes) -> dict[str, Any]:
    data = json.loads(body or b"{}")
    if not isinstance(data, dict):
        raise ValueError("not an object")
    return data


# -- ecommerce: the marketplace ------------------------------------------------------------------------


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
        return handler(_json(body))

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
        body = dumps(_public(message))
        ts = str(self.now() if timestamp is None else timestamp)
        sign = hmac_hex(self.app_secret, f"{self.app_key}\n{ts}\n".encode() + body)
        headers = {
            "Content-Type": "application/json",
            "X-App-Key": self.app_key,
            "X-Timestamp": ts,
            "X-Sign": sign,
        }
        return SignedCall(headers=headers, query={}, body=body, message=message)


def _mk_ok(data: dict[str, Any]) -> Reply:
    return json_reply({"code": 10000, "msg": "success", "data": data})


def _mk_error(code: int, sub_code: str, sub_msg: str) -> Reply:
    return json_reply({"code": code, "msg": "business error", "sub_code": sub_code, "sub_msg": sub_msg})


# -- locallife: the local-life platform ----------------------------------------------------------------


class FakeLocalLife(FakeChannelServer):
    """The local-life platform of ``docs/connectors/locallife.md``: SPI calls out, verification both ways."""

    def __init__(
        self, client_key: str = "kaquan-client", client_secret: str = "ll-secret", **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.client_key = client_key
        self.client_secret = client_secret
        #: code → {"order_id", "state": issued | verified_here | verified_by_merchant | refunded, "verify_token"}
        self.codes: dict[str, dict[str, Any]] = {}

    def route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Reply:
        timestamp = headers.get("x-life-timestamp", "")
        expected = hmac_hex(self.client_secret, f"{timestamp}\n{path}\n".encode() + body)
        if headers.get("x-life-client-key") != self.client_key or not hmac.compare_digest(
            expected, headers.get("x-life-sign", "")
        ):
            return _ll({"error_code": 2190008, "description": "invalid signature"})
        handler = {
            "/goodlife/v1/account/check": self._check,
            "/goodlife/v1/goods/stock/sync": self._stock,
            "/goodlife/v1/fulfilment/certificate/verify": self._verify,
            "/goodlife/v1/settle/bill/query": self._bills,
        }.get(path)
        if handler is None:
            return json_reply({"error": "not found"}, 404)
        return handler(_json(body))

    def _check(self, params: dict[str, Any]) -> Reply:
        return _ll({"error_code": 0, "description": "success", "account_name": "卡券生活馆"})

    def _stock(self, params: dict[str, Any]) -> Reply:
        results = []
        for item in params["items"]:
            known, stock = self.apply_stock(
                item["out_sku_id"],
                int(item["stock_qty"]),
                int(item["price"]),
                bool(item["on_sale"]),
                int(item["version"]),
            )
            code = 0 if known else 2119404
            results.append(
                {
                    "out_sku_id": item["out_sku_id"],
                    "error_code": code,
                    "stock_qty": stock,
                    "description": "success" if known else "sku not found",
                }
            )
        return _ll({"error_code": 0, "description": "success", "results": results})

    def _verify(self, params: dict[str, Any]) -> Reply:
        results = []
        for code in params["codes"]:
            with self.lock:
                record = self.codes.get(code)
                if record is None:
                    result = 2119404
                elif (
                    record["state"] == "verified_by_merchant"
                    and record["verify_token"] == params["verify_token"]
                ):
                    result = 0
                elif record["state"] != "issued":
                    result = 2119001
                else:
                    record.update(state="verified_by_merchant", verify_token=params["verify_token"])
                    result = 0
            results.append({"code": code, "result": result, "verify_id": f"v-{params['verify_token']}"})
        return _ll({"error_code": 0, "description": "success", "verify_results": results})

    def _bills(self, params: dict[str, Any]) -> Reply:
        bills, cursor, more = self.bill_page(
            int(params["start_time"]), int(params["end_time"]), str(params.get("cursor", "")), 100
        )
        kinds = {"sale": 1, "refund": 2, "commission": 3, "adjustment": 4}
        rows = [
            {
                "bill_id": b["bill_id"],
                "order_id": b["order_id"],
                "line_id": b["line_id"],
                "bill_type": kinds[b["kind"]],
                "amount": b["amount"],
                "commission": b["commission"],
                "settle_time": b["time"],
            }
            for b in bills
        ]
        return _ll(
            {"error_code": 0, "description": "success", "bills": rows, "cursor": cursor, "has_more": more}
        )

    # the platform's SPI calls ----------------------------------------------------------------------

    def spi(
        self, kind: str, content: dict[str, Any], *, msg_id: str = "", timestamp: int | None = None
    ) -> SignedCall:
        """A signed SPI call of ``kind`` (issue_code, query_code, verify_notify, refund_notify, ping)."""
        message = {
            "msg_id": msg_id or self.next_id("spi"),
            "type": kind,
            "create_time": self.now(),
            "content": content,
        }
        body = dumps(message)
        ts = str(self.now() if timestamp is None else timestamp)
        headers = {
            "Content-Type": "application/json",
            "X-Life-Client-Key": self.client_key,
            "X-Life-Timestamp": ts,
            "X-Life-Sign": hmac_hex(self.client_secret, f"{ts}\n".encode() + body),
        }
        return SignedCall(headers=headers, query={}, body=body, message=message)

    def buy(
        self, sku: str, count: int = 1, unit_price: int = 4900, *, open_id: str = "ou-1", phone: str = ""
    ) -> SignedCall:
        """A buyer pays for ``count`` vouchers of ``sku``: the ``issue_code`` SPI call the platform makes."""
        order = self.new_order([(sku, count, unit_price)], {"open_id": open_id, "phone": phone, "ip": ""})
        line_id = next(iter(order.lines))
        content = {
            "order_id": order.order_id,
            "line_id": line_id,
            "pay_time": order.paid_at,
            "out_sku_id": sku,
            "count": count,
            "unit_price": unit_price,
            "buyer": order.buyer,
        }
        return self.spi("issue_code", content)

    def take_issue_reply(self, order_id: str, body: bytes) -> list[str]:
        """Read the merchant's answer to ``issue_code`` as the platform does: the codes it now sells."""
        data = json.loads(body)["data"]
        if data.get("error_code") != 0 or data.get("result") != 1:
            return []
        codes = [c["code"] for c in data.get("codes", [])]
        with self.lock:
            for code in codes:
                self.codes.setdefault(code, {"order_id": order_id, "state": "issued", "verify_token": ""})
        return codes

    def verify_on_channel(self, code: str, *, poi_id: str = "poi-1") -> SignedCall:
        """A store verifies ``code`` through the platform: the ``verify_notify`` SPI call."""
        with self.lock:
            record = self.codes[code]
            record["state"] = "verified_here"
        content = {
            "order_id": record["order_id"],
            "code": code,
            "verify_time": self.now(),
            "verify_id": self.next_id("vf"),
            "poi_id": poi_id,
        }
        return self.spi("verify_notify", content)

    def refund_request(self, order_id: str, count: int = 1) -> SignedCall:
        """The buyer asks for a refund: the ``refund_notify`` SPI call (the merchant may refuse it)."""
        order = self.orders[order_id]
        line_id, line = next(iter(order.lines.items()))
        content = {
            "order_id": order_id,
            "line_id": line_id,
            "refund_id": self.next_id("rf"),
            "count": count,
            "refund_amount": count * line["price"],
            "reason": "buyer changed mind",
        }
        return self.spi("refund_notify", content)


def _ll(data: dict[str, Any]) -> Reply:
    return json_reply(
        {"data": data, "extra": {"logid": secrets.token_hex(8), "error_code": data.get("error_code", 0)}}
    )


# -- social: the mini-program / short-video shop --------------------------------------------------------


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
            return self._token(_json(body))
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
        return handler(_json(body))

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
        body = dumps(_public(message))
        ts = str(self.now() if timestamp is None else timestamp)
        nonce = secrets.token_hex(6)
        signature = hmac_hex(self.callback_token, f"{ts}\n{nonce}\n".encode() + body)
        query = {"timestamp": ts, "nonce": nonce, "msg_signature": signature}
        return SignedCall(
            headers={"Content-Type": "application/json"}, query=query, body=body, message=message
        )


def utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)
