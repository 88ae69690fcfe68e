"""The fake channel servers as the conformance kit drives them (:class:`plugins.testing.ChannelSimulator`).

Each simulator holds one fake platform, keyed by the kit's account config (the fake checks and signs with the
same secrets) and clock (the fake's time is the kit's ``now``). The kit reaches the fake's API through
``httpx.MockTransport`` (:meth:`ChannelSimulator.handle`: the fake's own request logic, no socket), and plays
its failures on top; the tests in ``test_<id>_channel.py`` reach the same fakes over real HTTP.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any

import httpx
import msgspec

from plugins import Buyer, CallbackReply, CallbackRequest, ChannelOrder, OrderLine
from plugins.testing import ChannelSimulator
from tests.fakes._server import FakeChannelServer, SignedCall
from tests.fakes.locallife import FakeLocalLife
from tests.fakes.marketplace import FakeMarketplace
from tests.fakes.social_shop import FakeSocialShop

INVALID_SKU = "KIT-NOT-ON-THE-CHANNEL"


class FakeServerSimulator(ChannelSimulator):
    """What the three share: the fake's API, its orders as contract orders, shown stock, received codes."""

    fake: FakeChannelServer

    def __init__(self, config: msgspec.Struct, account_id: str, now: Any) -> None:
        super().__init__(config, account_id, now)
        self.fake = self.make_fake(config)
        self.fake.clock = lambda: self.now().timestamp()
        self.fake.known_skus = set(self.skus)

    def make_fake(self, config: Any) -> FakeChannelServer:
        raise NotImplementedError

    def handle(self, request: httpx.Request) -> httpx.Response:
        query = dict(urllib.parse.parse_qsl(request.url.query.decode()))
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, out_headers, out = self.fake.handle(
            request.method, request.url.path, query, headers, request.content
        )
        return httpx.Response(status, headers=out_headers, content=out)

    def request(self, call: SignedCall) -> CallbackRequest:
        return CallbackRequest(
            headers={k.lower(): v for k, v in call.headers.items()},
            query=dict(call.query),
            body=call.body,
            received_at=self.now(),
        )

    def contract_order(self, order_id: str) -> ChannelOrder:
        order = self.fake.orders[order_id]
        return ChannelOrder(
            order_id=order.order_id,
            placed_at=dt.datetime.fromtimestamp(order.paid_at, dt.UTC),
            lines=[
                OrderLine(line_id=lid, sku=ln["sku"], quantity=ln["quantity"], unit_price_fen=ln["price"])
                for lid, ln in order.lines.items()
            ],
            buyer=Buyer(id=str(order.buyer.get("buyer_id") or order.buyer.get("open_id") or "")),
        )

    def shown(self, sku: str) -> int | None:
        item = self.fake.skus.get(sku)
        return None if item is None else item.stock

    def invalid_sku(self) -> str:
        return INVALID_SKU

    def received(self, order_id: str, line_id: str) -> list[str]:
        done = self.fake.deliveries.get((order_id, line_id))
        return [] if done is None else [c["code"] for c in done["codes"]]

    def signed(self, body: bytes) -> CallbackRequest:
        return self.request(self.fake.sign(body))  # type: ignore[attr-defined]  # every platform fake signs


class MarketplaceSimulator(FakeServerSimulator):
    """The ``ecommerce`` marketplace; the account is authorised (its access token is the kit's)."""

    fake: FakeMarketplace

    def make_fake(self, config: Any) -> FakeMarketplace:
        return FakeMarketplace(app_key=config.app_key, app_secret=config.app_secret)

    def __init__(self, config: msgspec.Struct, account_id: str, now: Any) -> None:
        super().__init__(config, account_id, now)
        self.access_token = self.fake.issue_token()

    def place_order(self, sku: str, quantity: int) -> ChannelOrder:
        message = self.fake.place_order(sku, quantity)
        return self.contract_order(message["data"]["order_id"])

    def order_callback(self, order_id: str) -> CallbackRequest:
        message = next(
            m for m in self.fake.messages if m["tag"] == "trade.paid" and m["data"]["order_id"] == order_id
        )
        return self.request(self.fake.callback(message))

    def refund(self, order_id: str) -> None:
        self.fake.refund(order_id)


class SocialShopSimulator(FakeServerSimulator):
    """The ``social`` shop (its app token comes from the fake's ``stable_token``)."""

    fake: FakeSocialShop

    def make_fake(self, config: Any) -> FakeSocialShop:
        return FakeSocialShop(appid=config.appid, secret=config.secret, callback_token=config.callback_token)

    def place_order(self, sku: str, quantity: int) -> ChannelOrder:
        message = self.fake.place_order(sku, quantity, sharer="kit-sharer", finder="kit-creator")
        return self.contract_order(message["order_info"]["order_id"])

    def order_callback(self, order_id: str) -> CallbackRequest:
        message = next(
            m
            for m in self.fake.messages
            if m["Event"] == "channels_ec_order_pay" and m["order_info"]["order_id"] == order_id
        )
        return self.request(self.fake.callback(message))

    def refund(self, order_id: str) -> None:
        self.fake.refund(order_id)


class LocalLifeSimulator(FakeServerSimulator):
    """The ``locallife`` platform: a paid order reaches kaquan as the ``issue_code`` call for it."""

    fake: FakeLocalLife

    def make_fake(self, config: Any) -> FakeLocalLife:
        return FakeLocalLife(client_key=config.client_key, client_secret=config.client_secret)

    def place_order(self, sku: str, quantity: int) -> ChannelOrder:
        call = self.fake.buy(sku, quantity)
        return self.contract_order(call.message["content"]["order_id"])

    def order_callback(self, order_id: str) -> CallbackRequest:
        return self.request(self.fake.issue_call(order_id))

    def issue_callback(self, sku: str, quantity: int) -> CallbackRequest:
        return self.request(self.fake.buy(sku, quantity))

    def read_issue_reply(self, order_id: str, reply: CallbackReply) -> list[str]:
        return self.fake.take_issue_reply(order_id, reply.body)

    def hold_codes(self, order_id: str, line_id: str, codes: list[str]) -> None:
        with self.fake.lock:
            for code in codes:
                self.fake.codes[code] = {"order_id": order_id, "state": "issued", "verify_token": ""}

    def redemptions_recorded(self, code: str) -> int:
        return self.fake.verifications.get(code, 0)
