"""The built-in ``social`` channel against a fake mini-program / short-video shop (docs/connectors/social.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pluggy
import pytest
from structlog.testing import capture_logs

from plugins import (
    BadCallback,
    CallbackOutcome,
    CodeDelivery,
    IssuedCode,
    SalesChannel,
    StatementRequest,
    StockItem,
    StockPush,
    hookspecs,
)
from plugins.builtin._channel_http import ChannelUnavailable
from plugins.builtin.social_channel import CONNECTOR, SocialChannel, SocialConfig
from plugins.testing import channel_conformance
from tests.fakes import callback_request, channel_context
from tests.fakes.channel_servers import FakeSocialShop, SignedCall, hmac_hex
from tests.fakes.simulators import SocialShopSimulator

SECRET = "so-secret-canary-2c8e"
TOKEN = "so-callback-canary-77aa"


@pytest.fixture
def shop() -> Iterator[FakeSocialShop]:
    with FakeSocialShop(secret=SECRET, callback_token=TOKEN) as fake:
        yield fake  # type: ignore[misc]  # __enter__ returns the base type


@pytest.fixture
def config(shop: FakeSocialShop) -> SocialConfig:
    return SocialConfig(
        base_url=shop.url, appid=shop.appid, secret=SECRET, callback_token=TOKEN, timeout_seconds=2
    )


@pytest.fixture
def channel() -> SocialChannel:
    """A fresh connector (its own token cache) per test."""
    return SocialChannel()


def req(call: SignedCall):
    return callback_request(call.headers, call.query, call.body)


def test_registered_through_its_entry_point():
    pm = pluggy.PluginManager("kaquan")
    pm.add_hookspecs(hookspecs)
    assert pm.load_setuptools_entrypoints("kaquan", name="social_channel") == 1
    assert [c.info.id for group in pm.hook.kaquan_connectors() for c in group] == ["social"]
    assert isinstance(CONNECTOR, SalesChannel) and "delivery" in CONNECTOR.info.capabilities


async def test_the_access_token_is_fetched_once_cached_and_renewed_when_it_expires(shop, config, channel):
    async with channel_context(config) as ctx:
        assert (await channel.check(ctx)).ok
        assert (await channel.check(ctx)).ok
        assert shop.tokens_issued == 1
        shop.expire_tokens()
        assert (await channel.check(ctx)).ok
    assert shop.tokens_issued == 2
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    async with channel_context(config, clock=lambda: later) as ctx:
        assert (await channel.check(ctx)).ok  # near its expiry the cached token is replaced before use
    assert shop.tokens_issued == 3


async def test_a_wrong_secret_fails_the_check_without_showing_it(shop, channel):
    wrong = SocialConfig(base_url=shop.url, appid=shop.appid, secret="wrong-secret-5d1", callback_token=TOKEN)
    async with channel_context(wrong) as ctx:
        result = await channel.check(ctx)
    assert not result.ok and "40125" in result.detail and "wrong-secret-5d1" not in result.detail


async def test_orders_carry_the_sharer_and_the_creator(shop, config, channel):
    shared = shop.place_order(
        "sku-c20", 2, 1990, sharer="o-sharer-9", finder="finder-kol-1", client_ip="10.9.8.7"
    )
    by_talent = shop.place_order("sku-c20", talent="talent-3")
    async with channel_context(config) as ctx:
        first = await channel.parse_callback(ctx, req(shop.callback(shared)))
        second = await channel.parse_callback(ctx, req(shop.callback(by_talent)))
        reply = channel.callback_reply(ctx, first, CallbackOutcome(status="accepted"))
        refused = channel.callback_reply(ctx, first, CallbackOutcome(status="refused", reason="risk"))
    assert first.type == "order.paid" and first.order is not None and first.message_id == shared["MsgId"]
    buyer = first.order.buyer
    assert (buyer.id, buyer.ip, buyer.referrer, buyer.kol) == (
        "o-buyer-1",
        "10.9.8.7",
        "o-sharer-9",
        "finder-kol-1",
    )
    assert (first.order.lines[0].quantity, first.order.lines[0].unit_price_fen) == (2, 1990)
    assert first.order.deliver_by == first.order.placed_at + dt.timedelta(hours=48)
    assert second.order is not None and (second.order.buyer.referrer, second.order.buyer.kol) == (
        "",
        "talent-3",
    )
    assert (reply.status, reply.body, reply.content_type) == (200, b"success", "text/plain")
    assert refused == reply  # the push was received; the refusal is kaquan's


async def test_forged_stale_and_malformed_pushes_are_refused(shop, config, channel):
    message = shop.place_order("sku-c20")
    good = shop.callback(message)
    stale = shop.callback(message, timestamp=shop.now() - 7200)
    forged = SignedCall(good.headers, dict(good.query, msg_signature="00" * 32), good.body, message)
    no_nonce = SignedCall(good.headers, dict(good.query, nonce=""), good.body, message)
    async with channel_context(config) as ctx:
        for call in (forged, no_nonce, good.tampered()):
            with pytest.raises(BadCallback) as caught:
                await channel.parse_callback(ctx, req(call))
            assert caught.value.signature
        with pytest.raises(BadCallback, match="stale"):
            await channel.parse_callback(ctx, req(stale))
        ts, nonce = str(shop.now()), "n1"
        for body in (
            b"<xml/>",
            b'{"MsgId":"m","Event":"channels_ec_order_pay","CreateTime":1,"order_info":{}}',
        ):
            query = {
                "timestamp": ts,
                "nonce": nonce,
                "msg_signature": hmac_hex(TOKEN, f"{ts}\n{nonce}\n".encode() + body),
            }
            with pytest.raises(BadCallback) as caught:
                await channel.parse_callback(ctx, callback_request({}, query, body))
            assert not caught.value.signature
        bad = channel.callback_reply(ctx, None, CallbackOutcome(status="refused", reason="bad signature"))
    assert bad.status == 400


async def test_order_list_pages_without_gaps_and_refunds_follow(shop, config, channel):
    config = SocialConfig(
        base_url=shop.url, appid=shop.appid, secret=SECRET, callback_token=TOKEN, page_size=4
    )
    placed = [shop.place_order("sku-c20", sharer=f"s{n}")["MsgId"] for n in range(10)]
    first_order = next(iter(shop.orders))
    placed.append(shop.refund(first_order, 1)["MsgId"])
    placed.append(shop.refund(list(shop.orders)[1], cancel=True)["MsgId"])
    seen: list[str] = []
    types: list[str] = []
    cursor = ""
    async with channel_context(config) as ctx:
        while True:
            page = await channel.pull_orders(ctx, cursor)
            seen += [e.message_id for e in page.events]
            types += [e.type for e in page.events]
            cursor = page.next_cursor
            if not page.has_more:
                break
        shop.fail_next(status=504)
        with pytest.raises(ChannelUnavailable) as caught:
            await channel.pull_orders(ctx, cursor)
    assert seen == placed and types[-2:] == ["order.refunded", "order.cancelled"] and caught.value.retryable


async def test_virtual_delivery_is_idempotent_and_refused_for_a_closed_order(shop, config, channel):
    info = shop.place_order("sku-c20", 1)["order_info"]
    line = info["products"][0]["line_id"]
    delivery = CodeDelivery(
        order_id=info["order_id"],
        line_id=line,
        codes=[IssuedCode(line_id=line, code="SC-1")],
        reference="d-1",
    )
    closed = shop.place_order("sku-c20", 1)["order_info"]
    shop.refund(closed["order_id"], cancel=True)
    late_line = closed["products"][0]["line_id"]
    async with channel_context(config) as ctx:
        shop.fail_next_with({"errcode": -1, "errmsg": "system busy"})
        busy = await channel.deliver_codes(ctx, delivery)
        results = [await channel.deliver_codes(ctx, delivery) for _ in range(6)]
        late = await channel.deliver_codes(
            ctx,
            CodeDelivery(
                order_id=closed["order_id"],
                line_id=late_line,
                codes=[IssuedCode(line_id=late_line, code="SC-2")],
                reference="d-2",
            ),
        )
    assert busy.status == "failed" and busy.retryable
    assert {r.status for r in results} == {"ok"} and len({r.channel_ref for r in results}) == 1
    assert len(shop.deliveries) == 1
    assert late.status == "rejected" and "10020002" in late.detail


async def test_stock_push_funds_flow_and_failures(shop, config, channel):
    shop.known_skus = {"sku-c20"}
    batch = StockPush(
        reference="p",
        items=[
            StockItem(sku="sku-c20", listing_id="l", available=33, price_fen=1990, version=5),
            StockItem(sku="sku-unknown", listing_id="m", available=2, price_fen=100, version=5),
        ],
    )
    async with channel_context(config) as ctx:
        result = await channel.push_stock(ctx, batch)
        again = await channel.push_stock(ctx, batch)
        shop.fail_next_with({"errcode": 45009, "errmsg": "api freq out of limit"})
        limited = await channel.push_stock(ctx, batch)
        shop.delay_next(3.0)
        slow = await channel.push_stock(ctx, batch)
        info = shop.place_order("sku-c20", 1, 1990)["order_info"]
        line = info["products"][0]["line_id"]
        await channel.deliver_codes(
            ctx,
            CodeDelivery(
                order_id=info["order_id"],
                line_id=line,
                codes=[IssuedCode(line_id=line, code="x")],
                reference="r",
            ),
        )
        now = dt.datetime.now(dt.UTC)
        flows = await channel.fetch_statement(
            ctx, StatementRequest(start=now - dt.timedelta(hours=1), end=now + dt.timedelta(hours=1))
        )
    assert [(r.status, r.channel_available) for r in result.items] == [
        ("ok", 33),
        ("rejected", 0),
    ] and again == result
    assert shop.skus["sku-c20"].updates == 1
    assert {(r.status, r.retryable) for r in limited.items} == {("failed", True)}
    assert {(r.status, r.retryable) for r in slow.items} == {("failed", True)}
    assert [(ln.kind, ln.amount_fen) for ln in flows.lines] == [("sale", 1990)]


async def test_no_secret_or_token_reaches_the_logs(shop, config, channel):
    with capture_logs() as logs:
        async with channel_context(config) as ctx:
            shop.fail_next(status=500)
            await channel.check(ctx)
            await channel.check(ctx)
            shop.fail_next_with({"errcode": 40013, "errmsg": "invalid appid"})
            await channel.check(ctx)
    tokens = list(shop.tokens)
    assert logs and tokens
    assert all(secret not in repr(logs) for secret in (SECRET, TOKEN, *tokens))


async def test_a_token_refused_twice_in_a_row_is_a_retryable_failure(shop, config, channel):
    async with channel_context(config) as ctx:
        assert (await channel.check(ctx)).ok
        expired = {"errcode": 42001, "errmsg": "access_token expired"}
        shop.fail_path("/channels/ec/product/stock/batch_update", expired, count=2)
        refused = await channel.push_stock(
            ctx,
            StockPush(reference="p", items=[StockItem(sku="s", listing_id="l", available=1, price_fen=1)]),
        )
    assert {(r.status, r.retryable) for r in refused.items} == {("failed", True)}
    assert "fresh access token" in refused.items[0].detail and shop.tokens_issued == 2


class TestSocialConformance(
    channel_conformance(CONNECTOR, SocialShopSimulator, entry_point="social_channel")
):
    """The partner conformance kit, on the social shop fake."""

    @pytest.fixture
    def connector_config(self) -> SocialConfig:
        return SocialConfig(
            appid="wx-kit", secret="kit-app-secret", callback_token="kit-callback", page_size=5
        )
