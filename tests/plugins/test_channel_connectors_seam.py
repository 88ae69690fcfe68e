"""The three HTTP channel connectors as kaquan calls them: loaded by the plugin host, config stored split into
public settings and secrets, every call through ``core.connectors.calls.BoundAccount.call``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.connectors.calls import BoundAccount, ConnectorCallFailed, split_config
from core.plugin_host import load_plugins
from plugins import CheckResult, OrderPage, StockItem, StockPush, StockPushResult, secret_fields
from tests.fakes.channel_servers import FakeChannelServer, FakeLocalLife, FakeMarketplace, FakeSocialShop


def _market(fake: Any) -> tuple[dict[str, Any], str]:
    return {"base_url": fake.url, "app_key": fake.app_key, "app_secret": fake.app_secret}, fake.issue_token()


def _life(fake: Any) -> tuple[dict[str, Any], str]:
    return {"base_url": fake.url, "client_key": fake.client_key, "client_secret": fake.client_secret}, ""


def _social(fake: Any) -> tuple[dict[str, Any], str]:
    values = {
        "base_url": fake.url,
        "appid": fake.appid,
        "secret": fake.secret,
        "callback_token": fake.callback_token,
    }
    return values, ""


CASES: dict[
    str, tuple[Callable[[], FakeChannelServer], Callable[[Any], tuple[dict[str, Any], str]], set[str]]
] = {
    "ecommerce": (lambda: FakeMarketplace(app_secret="seam-secret-ec-1"), _market, {"app_secret"}),
    "locallife": (lambda: FakeLocalLife(client_secret="seam-secret-ll-2"), _life, {"client_secret"}),
    "social": (
        lambda: FakeSocialShop(secret="seam-secret-so-3", callback_token="seam-secret-so-4"),
        _social,
        {"secret", "callback_token"},
    ),
}


@pytest.fixture(params=sorted(CASES))
def account(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[BoundAccount, FakeChannelServer, dict[str, Any]]]:
    connector_id = request.param
    make_fake, settings, secrets = CASES[connector_id]
    host = load_plugins()
    connector = host.connector(connector_id)
    with make_fake() as fake:
        values, token = settings(fake)
        public, hidden = split_config(connector.info.config, values)
        assert set(hidden) == secrets == set(secret_fields(connector.info.config))
        bound = BoundAccount(
            account_id=uuid.uuid4(),
            tenant_id=uuid.uuid4(),
            connector_id=connector_id,
            kind="sales_channel",
            connector=connector,
            config=host.connector_config(connector_id, {**public, **hidden}),
            access_token=token,
            capabilities=frozenset(connector.info.capabilities),
        )
        yield bound, fake, hidden


async def test_check_and_stock_push_through_the_seam(account):
    bound, fake, _ = account
    assert (await bound.call("check", expect=CheckResult)).ok
    push = StockPush(
        reference="seam-1", items=[StockItem(sku="S-1", listing_id="L-1", available=9, price_fen=990)]
    )
    result = await bound.call("push_stock", push, expect=StockPushResult, limit=5)
    assert [(r.status, r.channel_available) for r in result.items] == [("ok", 9)]
    assert fake.skus["S-1"].stock == 9


async def test_a_failed_pull_fails_only_that_call_and_says_nothing_secret(account):
    bound, fake, hidden = account
    if not bound.supports("order_pull"):
        assert (await bound.call("pull_orders", "c-7", expect=OrderPage)).next_cursor == "c-7"
        return
    fake.fail_next(status=503)
    with pytest.raises(ConnectorCallFailed) as caught:
        await bound.call("pull_orders", "", expect=OrderPage)
    assert caught.value.retryable and caught.value.reason == "raised"
    assert "503" in caught.value.detail and not any(v in str(caught.value) for v in hidden.values())
    assert (await bound.call("pull_orders", "", expect=OrderPage)).events == []


async def test_a_hanging_channel_is_cut_by_the_seams_timeout(account):
    bound, fake, _ = account
    fake.delay_next(2.0, count=3)
    with pytest.raises(ConnectorCallFailed) as caught:
        await bound.call("check", expect=CheckResult, limit=0.5)
    assert caught.value.reason == "timeout" and caught.value.retryable
