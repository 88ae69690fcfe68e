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

from tests.fakes._server import FakeChannelServer, Order, SignedCall, Sku, dumps, hmac_hex, json_reply
from tests.fakes.locallife import FakeLocalLife
from tests.fakes.marketplace import FakeMarketplace
from tests.fakes.social_shop import FakeSocialShop

__all__ = [
    "FakeChannelServer",
    "FakeLocalLife",
    "FakeMarketplace",
    "FakeSocialShop",
    "Order",
    "SignedCall",
    "Sku",
    "dumps",
    "hmac_hex",
    "json_reply",
]
