from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.channel_orders.fake_channel import (
    CONNECTOR_ID,
    ChannelShop,
    FakeChannel,
    FakeChannelPlugin,
    connect_account,
)
from tests.integration.inventory.stocking import Stocked, stock_product

_CHANNEL = FakeChannel()


@pytest.fixture(scope="session")
def channel(app: Any) -> FakeChannel:
    """The fake channel connector, registered once on the app's plugin host (the one jobs use too)."""
    host = app.state.jobs.plugins
    if CONNECTOR_ID not in host.connectors():
        host.register(FakeChannelPlugin(_CHANNEL), name="test-orders-channel")
    return _CHANNEL


@pytest.fixture
async def quiet_relay(client: Any, app: Any) -> AsyncIterator[None]:
    """The app's outbox relay stopped for the test: the test runs the channel-order jobs itself."""
    relay = app.state.jobs.relay
    await relay.stop()
    try:
        yield
    finally:
        relay.start()


@dataclass
class Seller:
    """A tenant with an API client, a channel account and a stocked product."""

    tenant_id: uuid.UUID
    shop: ChannelShop
    headers: dict[str, str]
    stocked: Stocked


@pytest.fixture
async def seller(client, kernel, make_tenant, make_api_client, channel, quiet_relay) -> Seller:
    tenant = await make_tenant(plan="growth")
    creds = await make_api_client(tenant)
    shop = await connect_account(kernel, tenant.id)
    stocked = await stock_product(kernel, tenant.id, 10, unit_cost=700)
    return Seller(tenant.id, shop, creds.headers, stocked)
