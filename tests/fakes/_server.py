"""The shared part of the fake channel servers: the HTTP server, failures, SKUs, orders, messages, bills."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
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
        """POST this call to ``url`` (kaquan's callback route); the HTTP status and body answered
        (status 0 when no answer came: connection refused or dropped, or nothing within ``timeout``)."""
        target = url + ("?" + urllib.parse.urlencode(self.query) if self.query else "")
        request = urllib.request.Request(target, data=self.body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            return 0, b""  # no answer: refused, dropped or not within ``timeout``


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
        return [public(m) for m in chosen], next_cursor, len(rest) > len(chosen)

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


def public(message: dict[str, Any]) -> dict[str, Any]:
    """A message without the fake's own bookkeeping fields (``_seq``)."""
    return {k: v for k, v in message.items() if not k.startswith("_")}


def parse_json(body: bytes) -> dict[str, Any]:
    data = json.loads(body or b"{}")
    if not isinstance(data, dict):
        raise ValueError("not an object")
    return data
