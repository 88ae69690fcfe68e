import json

import httpx
import pytest
from pebble_mall import PebbleMallChannel, PebbleMallConfig, sign

from plugins import CallbackRequest, ChannelOrder, OrderLine
from plugins.testing import ChannelSimulator, channel_conformance


class PebbleMallSimulator(ChannelSimulator):
    """The Pebble Mall API in memory: stock shown per SKU, the event log, deliveries by reference."""

    page_size = 5

    def __init__(self, config, account_id, now):
        super().__init__(config, account_id, now)
        self.stock = {}  # sku -> units shown
        self.events = []  # the mall's events, as its API and callbacks carry them
        self.lines = {}  # (order id, line id) -> units bought
        self.deliveries = {}  # reference -> (order id, line id)
        self.buyers = {}  # (order id, line id) -> codes the buyer received

    # -- the mall's API, as the connector calls it over HTTP --

    def handle(self, request):
        if request.headers.get("x-pebble-sign") != sign(self.config.app_secret, request.content):
            return httpx.Response(401, json={"error": "bad signature"})
        path = request.url.path.removeprefix("/v1")
        if request.method == "GET" and path == "/shop":
            return httpx.Response(200, json={"shop_id": self.config.shop_id})
        if request.method == "POST" and path == "/stock":
            return httpx.Response(
                200, json={"results": [self.set_stock(i) for i in json.loads(request.content)["items"]]}
            )
        if request.method == "GET" and path == "/events":
            start = int(request.url.params.get("after") or 0)
            end = min(start + self.page_size, len(self.events))
            return httpx.Response(
                200, json={"events": self.events[start:end], "next": str(end), "more": end < len(self.events)}
            )
        if request.method == "POST" and path.startswith("/orders/") and path.endswith("/deliveries"):
            return self.deliver(path.split("/")[2], json.loads(request.content))
        return httpx.Response(404, json={"error": "no such endpoint"})

    def set_stock(self, item):
        if item["sku"] not in self.skus:
            return {"sku": item["sku"], "ok": False, "error": "unknown sku"}
        self.stock[item["sku"]] = item["quantity"]
        return {"sku": item["sku"], "ok": True, "shown": item["quantity"]}

    def deliver(self, order_id, body):
        key = (order_id, body["line_id"])
        if key not in self.lines:
            return httpx.Response(404, json={"error": "no such order line"})
        if self.deliveries.get(body["reference"]) == key:
            return httpx.Response(200, json={"delivery": body["reference"]})  # a retry: delivered once
        if key in self.buyers:
            return httpx.Response(409, json={"error": "already delivered"})
        self.deliveries[body["reference"]] = key
        self.buyers[key] = [c["code"] for c in body["codes"]]
        return httpx.Response(200, json={"delivery": body["reference"]})

    # -- what the kit asks of the mall --

    def place_order(self, sku, quantity):
        assert self.stock.get(sku, 0) >= quantity, f"{sku} is not on sale"
        self.stock[sku] -= quantity
        order_id = f"PM{len(self.events) + 1:06d}"
        paid_at = self.now().isoformat()
        items = [{"line_id": f"{order_id}-1", "sku": sku, "qty": quantity, "price": 1000}]
        self.lines[(order_id, f"{order_id}-1")] = quantity
        self.events.append(
            {
                "id": f"evt-{order_id}",
                "type": "order.paid",
                "at": paid_at,
                "order": {"id": order_id, "paid_at": paid_at, "items": items, "buyer_id": "b-1"},
            }
        )
        line = OrderLine(line_id=f"{order_id}-1", sku=sku, quantity=quantity, unit_price_fen=1000)
        return ChannelOrder(order_id=order_id, placed_at=self.now(), lines=[line])

    def signed(self, body):
        stamp = str(int(self.now().timestamp()))
        headers = {
            "x-pebble-timestamp": stamp,
            "x-pebble-signature": sign(self.config.app_secret, stamp.encode() + b"." + body),
        }
        return CallbackRequest(headers=headers, query={}, body=body, received_at=self.now())

    def order_callback(self, order_id):
        event = next(e for e in self.events if e["type"] == "order.paid" and e["order"]["id"] == order_id)
        return self.signed(json.dumps(event).encode())

    def refund(self, order_id):
        line_id = f"{order_id}-1"
        qty = self.lines[(order_id, line_id)]
        refund = {
            "id": f"rf-{order_id}",
            "order_id": order_id,
            "line_id": line_id,
            "qty": qty,
            "amount": qty * 1000,
        }
        self.events.append(
            {
                "id": f"evt-rf-{order_id}",
                "type": "order.refunded",
                "at": self.now().isoformat(),
                "refund": refund,
            }
        )

    def shown(self, sku):
        return self.stock.get(sku)

    def invalid_sku(self):
        return "NOT-SOLD-HERE"

    def received(self, order_id, line_id):
        return self.buyers.get((order_id, line_id), [])


class TestPebbleMall(
    channel_conformance(PebbleMallChannel(), PebbleMallSimulator, entry_point="pebble_mall")
):
    @pytest.fixture
    def connector_config(self):
        return PebbleMallConfig(
            api_base="https://open.pebble-mall.test/v1", shop_id="shop-1", app_secret="test"
        )
