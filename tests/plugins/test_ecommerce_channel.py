"""The built-in ``ecommerce`` channel against a fake marketplace on 127.0.0.1 (docs/connectors/ecommerce.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pluggy
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from structlog.testing import capture_logs

from core.plugin_host import load_plugins
from plugins import (
    BadCallback,
    CallbackOutcome,
    CodeDelivery,
    IssuedCode,
    OAuthAuthorizable,
    SalesChannel,
    StatementRequest,
    StockItem,
    StockPush,
    hookspecs,
)
from plugins.builtin._channel_http import ChannelUnavailable
from plugins.builtin.ecommerce_channel import CONNECTOR, EcommerceConfig
from plugins.testing import channel_conformance
from tests.fakes import callback_request, channel_context
from tests.fakes.channel_servers import FakeMarketplace, hmac_hex
from tests.fakes.simulators import MarketplaceSimulator

SECRET = "mk-secret-canary-41d7"


@pytest.fixture
def market() -> Iterator[FakeMarketplace]:
    with FakeMarketplace(app_secret=SECRET) as fake:
        yield fake  # type: ignore[misc]  # __enter__ returns the base type


@pytest.fixture
def config(market: FakeMarketplace) -> EcommerceConfig:
    return EcommerceConfig(base_url=market.url, app_key=market.app_key, app_secret=SECRET, timeout_seconds=2)


def push(*items: StockItem, reference: str = "push-1") -> StockPush:
    return StockPush(reference=reference, items=list(items))


def item(sku: str, available: int, price: int = 9000, version: int = 1) -> StockItem:
    return StockItem(sku=sku, listing_id=f"l-{sku}", available=available, price_fen=price, version=version)


def test_registered_through_its_entry_point_and_loaded_by_the_host():
    pm = pluggy.PluginManager("kaquan")
    pm.add_hookspecs(hookspecs)
    assert pm.load_setuptools_entrypoints("kaquan", name="ecommerce_channel") == 1
    assert [c.info.id for group in pm.hook.kaquan_connectors() for c in group] == ["ecommerce"]
    host = load_plugins()
    assert host.connector("ecommerce") is CONNECTOR
    assert isinstance(CONNECTOR, SalesChannel) and isinstance(CONNECTOR, OAuthAuthorizable)
    assert "oauth" in CONNECTOR.info.capabilities and "delivery" in CONNECTOR.info.capabilities


async def test_shop_authorisation_by_oauth2_code_then_refresh(market, config):
    spec = CONNECTOR.oauth_client(config)
    assert spec.client_secret == SECRET and spec.token_url == f"{market.url}/oauth2/access_token"
    redirect = "https://kaquan.example/console/connectors/oauth/callback"
    async with AsyncOAuth2Client(
        spec.client_id, spec.client_secret, scope=spec.scope, redirect_uri=redirect
    ) as oauth:
        url, state = oauth.create_authorization_url(spec.authorize_url)
        async with httpx.AsyncClient() as browser:
            answer = await browser.get(url)
        assert answer.status_code == 302
        back = httpx.URL(answer.headers["location"])
        assert back.params["state"] == state
        token = await oauth.fetch_token(spec.token_url, code=back.params["code"])
        assert token["shop_id"] == market.shop_id and token["expires_in"] == 7200
        async with channel_context(config, access_token=token["access_token"]) as ctx:
            assert (await CONNECTOR.check(ctx)).ok
        refreshed = await oauth.refresh_token(spec.token_url, refresh_token=token["refresh_token"])
        assert refreshed["access_token"] != token["access_token"]
        with pytest.raises(Exception, match="invalid_grant"):
            await oauth.refresh_token(spec.token_url, refresh_token=token["refresh_token"])  # used once


async def test_check_needs_authorisation_and_the_right_secret(market, config):
    async with channel_context(config) as ctx:
        result = await CONNECTOR.check(ctx)
    assert not result.ok and "authorised" in result.detail
    token = market.issue_token()
    async with channel_context(config, access_token=token) as ctx:
        assert (await CONNECTOR.check(ctx)).ok
    wrong = EcommerceConfig(base_url=market.url, app_key=market.app_key, app_secret="not-the-secret")
    async with channel_context(wrong, access_token=token) as ctx:
        result = await CONNECTOR.check(ctx)
    assert not result.ok and "40003" in result.detail and "not-the-secret" not in result.detail
    async with channel_context(config, access_token="at-revoked") as ctx:
        result = await CONNECTOR.check(ctx)
    assert not result.ok and "authorise again" in result.detail


async def test_stock_push_sets_stock_and_price_per_item_and_is_idempotent(market, config):
    market.known_skus = {"sku-a", "sku-b"}
    token = market.issue_token()
    batch = push(item("sku-a", 40, 9500, version=3), item("sku-b", 0, 4500, version=3), item("sku-x", 5))
    async with channel_context(config, access_token=token) as ctx:
        first = await CONNECTOR.push_stock(ctx, batch)
        again = await CONNECTOR.push_stock(ctx, batch)
        stale = await CONNECTOR.push_stock(ctx, push(item("sku-a", 1, 1, version=2), reference="push-0"))
    assert [(r.sku, r.status, r.channel_available) for r in first.items] == [
        ("sku-a", "ok", 40),
        ("sku-b", "ok", 0),
        ("sku-x", "rejected", None),
    ]
    assert first.items[2].retryable is False and "sku not found" in first.items[2].detail
    assert again == first
    assert (
        stale.items[0].status == "ok" and stale.items[0].channel_available == 40
    )  # an older version is dropped
    assert (market.skus["sku-a"].stock, market.skus["sku-a"].price, market.skus["sku-a"].updates) == (
        40,
        9500,
        1,
    )


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (502, True), (503, True), (429, True), (400, False), (403, False)]
)
async def test_stock_push_failures_are_reported_per_item(market, config, status, retryable):
    token = market.issue_token()
    market.fail_next(status=status)
    async with channel_context(config, access_token=token) as ctx:
        result = await CONNECTOR.push_stock(ctx, push(item("sku-a", 3), item("sku-b", 4)))
    assert [(r.status, r.retryable) for r in result.items] == [
        ("failed" if retryable else "rejected", retryable)
    ] * 2


async def test_a_timeout_and_a_busy_channel_are_retryable(market, config):
    token = market.issue_token()
    market.delay_next(3.0)
    async with channel_context(config, access_token=token) as ctx:
        slow = await CONNECTOR.push_stock(ctx, push(item("sku-a", 3)))
        market.fail_next_with({"code": 20000, "msg": "system busy"})
        busy = await CONNECTOR.deliver_codes(
            ctx, CodeDelivery(order_id="o", line_id="l", codes=[], reference="r")
        )
    assert (
        slow.items[0].status == "failed" and slow.items[0].retryable and "timed out" in slow.items[0].detail
    )
    assert busy.status == "failed" and busy.retryable


async def test_an_order_callback_is_verified_and_parsed(market, config):
    message = market.place_order("sku-a", 2, 9000, buyer_id="b-77", phone="13800138000", ip="10.1.2.3")
    call = market.callback(message)
    async with channel_context(config) as ctx:
        event = await CONNECTOR.parse_callback(ctx, callback_request(call.headers, call.query, call.body))
        again = await CONNECTOR.parse_callback(ctx, callback_request(call.headers, call.query, call.body))
        reply = CONNECTOR.callback_reply(ctx, event, CallbackOutcome(status="accepted"))
        dup = CONNECTOR.callback_reply(ctx, again, CallbackOutcome(status="duplicate"))
    assert event.type == "order.paid" and event.message_id == message["msg_id"] == again.message_id
    assert event.order is not None and event.order.order_id == message["data"]["order_id"]
    (line,) = event.order.lines
    assert (line.sku, line.quantity, line.unit_price_fen) == ("sku-a", 2, 9000)
    assert (event.order.buyer.id, event.order.buyer.phone, event.order.buyer.ip) == (
        "b-77",
        "13800138000",
        "10.1.2.3",
    )
    assert event.order.deliver_by == event.order.placed_at + dt.timedelta(hours=1)
    assert (reply.status, reply.body) == (200, b'{"code":0,"msg":"success"}') and dup == reply


async def test_forged_stale_and_malformed_callbacks_are_refused(market, config):
    message = market.place_order("sku-a")
    good = market.callback(message)
    forged = dict(good.headers, **{"X-Sign": "0" * 64})
    other_app = dict(good.headers, **{"X-App-Key": "someone-else"})
    stale = market.callback(message, timestamp=market.now() - 3600)
    async with channel_context(config) as ctx:
        for headers, body in (
            (forged, good.body),
            (other_app, good.body),
            (good.headers, good.tampered().body),
        ):
            with pytest.raises(BadCallback) as caught:
                await CONNECTOR.parse_callback(ctx, callback_request(headers, {}, body))
            assert caught.value.signature
        with pytest.raises(BadCallback, match="stale"):
            await CONNECTOR.parse_callback(ctx, callback_request(stale.headers, {}, stale.body))
        for body in (
            b"not json",
            b"[]",
            b'{"msg_id":"m1","tag":"trade.paid","created":1,"data":{"items":[]}}',
        ):
            signed = market.callback({"x": 1})
            ts = signed.headers["X-Timestamp"]
            headers = dict(
                signed.headers, **{"X-Sign": hmac_hex(SECRET, f"{market.app_key}\n{ts}\n".encode() + body)}
            )
            with pytest.raises(BadCallback) as caught:
                await CONNECTOR.parse_callback(ctx, callback_request(headers, {}, body))
            assert not caught.value.signature
        reply = CONNECTOR.callback_reply(ctx, None, CallbackOutcome(status="refused", reason="bad signature"))
    assert reply.status == 400


async def test_pulling_by_cursor_never_skips_or_repeats(market, config):
    token = market.issue_token()
    config = EcommerceConfig(base_url=market.url, app_key=market.app_key, app_secret=SECRET, page_size=7)
    placed = [market.place_order(f"sku-{n % 3}")["msg_id"] for n in range(30)]
    seen: list[str] = []
    cursor = ""
    async with channel_context(config, access_token=token) as ctx:
        for round_ in range(20):
            page = await CONNECTOR.pull_orders(ctx, cursor)
            seen += [e.message_id for e in page.events]
            cursor = page.next_cursor
            if round_ == 1:  # orders keep arriving while we page
                placed += [market.place_order("sku-late")["msg_id"] for _ in range(3)]
            if not page.has_more:
                break
        empty = await CONNECTOR.pull_orders(ctx, cursor)
        refund = market.refund(market.orders[next(iter(market.orders))].order_id)
        tail = await CONNECTOR.pull_orders(ctx, cursor)
    assert seen == placed and empty.events == [] and empty.next_cursor == cursor
    assert [e.message_id for e in tail.events] == [refund["msg_id"]] and tail.events[
        0
    ].type == "order.refunded"


async def test_a_failed_pull_raises_channel_unavailable_and_consumes_nothing(market, config):
    token = market.issue_token()
    market.place_order("sku-a")
    market.fail_next(status=503)
    async with channel_context(config, access_token=token) as ctx:
        with pytest.raises(ChannelUnavailable) as caught:
            await CONNECTOR.pull_orders(ctx, "")
        assert caught.value.retryable
        page = await CONNECTOR.pull_orders(ctx, "")
    assert len(page.events) == 1


def codes(n: int, line_id: str) -> list[IssuedCode]:
    return [IssuedCode(line_id=line_id, code=f"KQ{i:010d}", pin=f"{i:06d}") for i in range(n)]


async def test_delivery_is_idempotent_under_six_retries(market, config):
    token = market.issue_token()
    data = market.place_order("sku-a", 2)["data"]
    line_id = data["items"][0]["line_id"]
    delivery = CodeDelivery(
        order_id=data["order_id"], line_id=line_id, codes=codes(2, line_id), reference="dlv-1"
    )
    async with channel_context(config, access_token=token) as ctx:
        market.fail_next(status=502)
        first = await CONNECTOR.deliver_codes(ctx, delivery)
        retries = [await CONNECTOR.deliver_codes(ctx, delivery) for _ in range(6)]
        other = await CONNECTOR.deliver_codes(
            ctx, CodeDelivery(**{**_fields(delivery), "reference": "dlv-2"})
        )
    assert first.status == "failed" and first.retryable
    assert {r.status for r in retries} == {"ok"} and len({r.channel_ref for r in retries}) == 1
    assert (
        len(market.deliveries) == 1
        and market.deliveries[(data["order_id"], line_id)]["codes"][0]["code"] == "KQ0000000000"
    )
    assert other.status == "rejected" and not other.retryable and "already-delivered" in other.detail


def _fields(delivery: CodeDelivery) -> dict:
    return {f: getattr(delivery, f) for f in delivery.__struct_fields__}


async def test_refunds_and_cancellations_arrive_as_events_and_close_delivery(market, config):
    token = market.issue_token()
    paid = market.place_order("sku-a", 3)["data"]
    refund = market.refund(paid["order_id"], 1)
    cancelled = market.place_order("sku-b")["data"]
    cancel = market.refund(cancelled["order_id"], cancel=True)
    async with channel_context(config, access_token=token) as ctx:
        events = [await CONNECTOR.parse_callback(ctx, _req(market.callback(m))) for m in (refund, cancel)]
        line = cancelled["items"][0]["line_id"]
        late = await CONNECTOR.deliver_codes(
            ctx,
            CodeDelivery(
                order_id=cancelled["order_id"], line_id=line, codes=codes(1, line), reference="late"
            ),
        )
    assert [e.type for e in events] == ["order.refunded", "order.cancelled"]
    assert events[0].refund is not None and (events[0].refund.quantity, events[0].refund.amount_fen) == (
        1,
        9000,
    )
    assert late.status == "rejected" and "order-closed" in late.detail


def _req(call):
    return callback_request(call.headers, call.query, call.body)


async def test_bills_page_through_sales_commissions_and_refunds(market, config):
    token = market.issue_token()
    config = EcommerceConfig(base_url=market.url, app_key=market.app_key, app_secret=SECRET, page_size=2)
    async with channel_context(config, access_token=token) as ctx:
        for n in range(2):
            data = market.place_order("sku-a", 1, 1000 * (n + 1))["data"]
            line = data["items"][0]["line_id"]
            delivered = await CONNECTOR.deliver_codes(
                ctx,
                CodeDelivery(
                    order_id=data["order_id"], line_id=line, codes=codes(1, line), reference=f"d{n}"
                ),
            )
            assert delivered.ok
        market.refund(data["order_id"])
        now = dt.datetime.now(dt.UTC)
        request = StatementRequest(start=now - dt.timedelta(hours=1), end=now + dt.timedelta(hours=1))
        lines = []
        while True:
            page = await CONNECTOR.fetch_statement(ctx, request)
            lines += page.lines
            if not page.has_more:
                break
            request = StatementRequest(start=request.start, end=request.end, cursor=page.next_cursor)
    assert [(ln.kind, ln.amount_fen, ln.commission_fen) for ln in lines] == [
        ("sale", 1000, 50),
        ("sale", 2000, 100),
        ("refund", -2000, 0),
    ]


async def test_no_secret_or_token_reaches_the_logs_on_any_path(market, config):
    token = market.issue_token()
    with capture_logs() as logs:
        async with channel_context(config, access_token=token) as ctx:
            for status in (500, 400, 429):
                market.fail_next(status=status)
                await CONNECTOR.push_stock(ctx, push(item("sku-a", 1)))
            market.delay_next(3.0)
            await CONNECTOR.check(ctx)
            market.fail_next_with({"code": 30001, "msg": "token"})
            await CONNECTOR.check(ctx)
            with pytest.raises(ChannelUnavailable) as caught:
                market.fail_next(status=500)
                await CONNECTOR.pull_orders(ctx, "")
    text = repr(logs) + str(caught.value)
    assert logs and SECRET not in text and token not in text


class TestEcommerceConformance(
    channel_conformance(CONNECTOR, MarketplaceSimulator, entry_point="ecommerce_channel")
):
    """The partner conformance kit, on the marketplace fake (an authorised shop)."""

    @pytest.fixture
    def connector_config(self) -> EcommerceConfig:
        return EcommerceConfig(app_key="kit-app", app_secret="kit-app-secret", page_size=5)
