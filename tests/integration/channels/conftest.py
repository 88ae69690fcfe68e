"""Fixtures for listings: a shop (tenant + API clients), its sales-channel accounts, and a test-local channel
connector registered on a plugin host of its own (it records pushes and can fail, raise, hang or drift)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from core.channels.pushing import PushReport, push_account
from core.connectors.models import ConnectorAccount
from core.plugin_host import PluginHost
from plugins import CheckResult, ConnectorInfo, StockItemResult, StockPush, StockPushResult, hookimpl
from tests.integration.grants.shops import Shop, open_shop


class FakeConfig(msgspec.Struct, kw_only=True):
    shop: str = "test"


@dataclass
class FakeChannel:
    """A sales channel in memory. ``fail`` items answer ``failed`` (retryable), ``raises``/``hangs`` calls do
    what they say, ``drift[sku]`` units are missing from what the channel reports holding."""

    info: ConnectorInfo = field(default_factory=lambda: ConnectorInfo(
        id="fake_channel", kind="sales_channel", display_name="Fake channel", config=FakeConfig,
        capabilities=frozenset({"stock_push"})))
    pushes: list[StockPush] = field(default_factory=list)
    stock: dict[str, int] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)
    raises: int = 0
    hangs: int = 0
    drift: dict[str, int] = field(default_factory=dict)

    async def check(self, ctx: Any) -> CheckResult:
        return CheckResult(ok=True)

    async def push_stock(self, ctx: Any, push: StockPush) -> StockPushResult:
        if self.raises:
            self.raises -= 1
            raise RuntimeError("channel exploded")
        if self.hangs:
            self.hangs -= 1
            await asyncio.sleep(3600)
        self.pushes.append(push)
        out = []
        for item in push.items:
            if item.sku in self.fail:
                out.append(StockItemResult(sku=item.sku, status="failed", retryable=True, detail="503 from channel"))
                continue
            self.stock[item.sku] = item.available - self.drift.get(item.sku, 0)
            out.append(StockItemResult(sku=item.sku, status="ok", channel_available=self.stock[item.sku]))
        return StockPushResult(items=out)


class FakePlugin:
    def __init__(self, channel: FakeChannel) -> None:
        self.channel = channel

    @hookimpl
    def kaquan_connectors(self) -> list[Any]:
        return [self.channel]


@pytest.fixture
def channel() -> FakeChannel:
    return FakeChannel()


@pytest.fixture
def host(channel: FakeChannel) -> PluginHost:
    h = PluginHost()
    h.register(FakePlugin(channel), name=f"fake-{secrets.token_hex(3)}")
    h.check()
    return h


@pytest.fixture
async def shop(client, kernel, make_tenant, make_api_client) -> Shop:
    return await open_shop(client, kernel, make_tenant, make_api_client)


@pytest.fixture
async def other_shop(client, kernel, make_tenant, make_api_client) -> Shop:
    return await open_shop(client, kernel, make_tenant, make_api_client)


async def add_account(shop: Shop, name: str | None = None, *, kind: str = "sales_channel",
                      status: str = "active") -> uuid.UUID:
    async def go(db: Any) -> uuid.UUID:
        account = ConnectorAccount(connector_id="fake_channel", kind=kind, name=name or f"shop-{secrets.token_hex(3)}",
                                   status=status, config={"shop": "test"})
        db.add(account)
        await db.flush()
        return account.id

    result: uuid.UUID = await shop.run(go)
    return result


@dataclass
class Pusher:
    shop: Shop
    host: PluginHost

    async def __call__(self, account_id: uuid.UUID, **kw: Any) -> PushReport:
        from core.db.context import tenant_context

        kernel = self.shop.kernel
        with tenant_context(self.shop.id):
            return await push_account(kernel.db, kernel.keys, self.host, account_id, **kw)


@pytest.fixture
def push(shop: Shop, host: PluginHost) -> Pusher:
    return Pusher(shop, host)
