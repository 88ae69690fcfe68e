"""The built-in ``locallife`` channel (三方码) against a fake local-life platform (docs/connectors/locallife.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pluggy
import pytest
from structlog.testing import capture_logs

from plugins import (
    BadCallback,
    CallbackOutcome,
    ChannelRedemption,
    IssuedCode,
    SalesChannel,
    StatementRequest,
    StockItem,
    StockPush,
    hookspecs,
)
from plugins.builtin.locallife_channel import ALREADY_VERIFIED, CONNECTOR, PROCESSING, LocallifeConfig
from plugins.testing import channel_conformance
from tests.fakes import callback_request, channel_context
from tests.fakes.channel_servers import FakeLocalLife, SignedCall, hmac_hex
from tests.fakes.simulators import LocalLifeSimulator

SECRET = "ll-secret-canary-93be"


@pytest.fixture
def life() -> Iterator[FakeLocalLife]:
    with FakeLocalLife(client_secret=SECRET) as fake:
        yield fake  # type: ignore[misc]  # __enter__ returns the base type


@pytest.fixture
def config(life: FakeLocalLife) -> LocallifeConfig:
    return LocallifeConfig(
        base_url=life.url,
        client_key=life.client_key,
        client_secret=SECRET,
        account_id="acc-9",
        poi_id="poi-main",
        timeout_seconds=2,
    )


def req(call: SignedCall):
    return callback_request(call.headers, call.query, call.body)


def issued(order_id: str, line_id: str, n: int, state: str = "issued") -> list[IssuedCode]:
    expires = dt.datetime(2027, 6, 30, 16, tzinfo=dt.UTC)
    return [
        IssuedCode(line_id=line_id, code=f"LL{order_id[-4:]}{i:04d}", pin="", expires_at=expires, state=state)  # type: ignore[arg-type]  # test data
        for i in range(n)
    ]


def test_registered_through_its_entry_point():
    pm = pluggy.PluginManager("kaquan")
    pm.add_hookspecs(hookspecs)
    assert pm.load_setuptools_entrypoints("kaquan", name="locallife_channel") == 1
    assert [c.info.id for group in pm.hook.kaquan_connectors() for c in group] == ["locallife"]
    assert isinstance(CONNECTOR, SalesChannel)
    assert {"third_party_codes", "redemption_sync"} <= CONNECTOR.info.capabilities
    assert "delivery" not in CONNECTOR.info.capabilities and "oauth" not in CONNECTOR.info.capabilities


async def test_check_and_a_wrong_secret(life, config):
    async with channel_context(config) as ctx:
        assert (await CONNECTOR.check(ctx)).ok
    wrong = LocallifeConfig(base_url=life.url, client_key=life.client_key, client_secret="nope")
    async with channel_context(wrong) as ctx:
        result = await CONNECTOR.check(ctx)
    assert not result.ok and "2190008" in result.detail and "nope" not in result.detail


async def test_issue_request_is_answered_synchronously_with_the_codes(life, config):
    call = life.buy("sku-v50", 2, 4900, open_id="ou-42", phone="13900001111")
    async with channel_context(config) as ctx:
        event = await CONNECTOR.parse_callback(ctx, req(call))
        assert event.type == "code.issue" and event.issue is not None
        order = event.issue.order
        (line,) = order.lines
        codes = issued(order.order_id, line.line_id, 2)
        reply = CONNECTOR.callback_reply(ctx, event, CallbackOutcome(status="issued", codes=codes))
    assert event.message_id == call.message["msg_id"]
    assert (line.sku, line.quantity, line.unit_price_fen) == ("sku-v50", 2, 4900)
    assert (order.buyer.id, order.buyer.phone) == ("ou-42", "13900001111")
    assert reply.status == 200
    body = json.loads(reply.body)["data"]
    assert body["error_code"] == 0 and body["result"] == 1
    assert [c["expire_time"] for c in body["codes"]] == [int(codes[0].expires_at.timestamp())] * 2
    assert life.take_issue_reply(order.order_id, reply.body) == [c.code for c in codes]


async def test_a_repeated_issue_request_gets_the_same_codes_or_is_asked_again(life, config):
    """The platform calls again (same msg_id) up to six times over ten minutes when it got no answer."""
    call = life.buy("sku-v50")
    async with channel_context(config) as ctx:
        events = [await CONNECTOR.parse_callback(ctx, req(call)) for _ in range(6)]
        order = events[0].issue.order  # type: ignore[union-attr]  # code.issue carries issue
        codes = issued(order.order_id, order.lines[0].line_id, 1)
        same = CONNECTOR.callback_reply(ctx, events[5], CallbackOutcome(status="duplicate", codes=codes))
        pending = CONNECTOR.callback_reply(ctx, events[5], CallbackOutcome(status="duplicate"))
        refused = CONNECTOR.callback_reply(
            ctx, events[5], CallbackOutcome(status="refused", reason="sold out")
        )
    assert len({e.message_id for e in events}) == 1
    assert json.loads(same.body)["data"]["codes"][0]["code"] == codes[0].code
    assert json.loads(pending.body)["data"] == {
        "error_code": PROCESSING,
        "description": "issuing, call again",
    }
    assert json.loads(refused.body)["data"] == {"error_code": 0, "description": "sold out", "result": 2}


async def test_issue_parse_and_reply_stay_far_inside_the_8_second_limit(life, config):
    calls = [life.buy(f"sku-{n % 5}") for n in range(50)]

    async def one(ctx, call):
        started = time.perf_counter()
        event = await CONNECTOR.parse_callback(ctx, req(call))
        order = event.issue.order  # type: ignore[union-attr]  # code.issue carries issue
        CONNECTOR.callback_reply(
            ctx, event, CallbackOutcome(status="issued", codes=issued(order.order_id, "l", 1))
        )
        return time.perf_counter() - started

    async with channel_context(config) as ctx:
        took = sorted(await asyncio.gather(*(one(ctx, c) for c in calls)))
    assert took[int(len(took) * 0.99) - 1] < 0.2


async def test_code_query_is_answered_with_each_codes_state(life, config):
    call = life.spi("query_code", {"order_id": "ord-1"})
    async with channel_context(config) as ctx:
        event = await CONNECTOR.parse_callback(ctx, req(call))
        codes = (
            issued("ord-0001", "l1", 1)
            + issued("ord-0002", "l1", 1, "redeemed")
            + issued("ord-0003", "l1", 1, "voided")
        )
        reply = CONNECTOR.callback_reply(ctx, event, CallbackOutcome(status="codes", codes=codes))
        unknown = CONNECTOR.callback_reply(
            ctx, event, CallbackOutcome(status="refused", reason="unknown order")
        )
    assert event.type == "code.query" and event.query is not None and event.query.order_id == "ord-1"
    assert [c["status"] for c in json.loads(reply.body)["data"]["codes"]] == [1, 2, 3]
    assert json.loads(unknown.body)["data"]["error_code"] != 0


async def test_redemption_in_step_both_ways_and_never_on_both(life, config):
    call = life.buy("sku-v50", 2)
    async with channel_context(config) as ctx:
        event = await CONNECTOR.parse_callback(ctx, req(call))
        order = event.issue.order  # type: ignore[union-attr]  # code.issue carries issue
        reply = CONNECTOR.callback_reply(
            ctx,
            event,
            CallbackOutcome(status="issued", codes=issued(order.order_id, order.lines[0].line_id, 2)),
        )
        ours, theirs = life.take_issue_reply(order.order_id, reply.body)
        now = dt.datetime.now(dt.UTC)
        # A store redeems through kaquan: reported to the platform, once per reference (retries are safe).
        mine = ChannelRedemption(
            order_id=order.order_id, code=ours, redeemed_at=now, reference="rd-1", store="poi-7"
        )
        reports = [await CONNECTOR.report_redemption(ctx, mine) for _ in range(3)]
        # The platform verifies the other code itself: kaquan hears of it …
        notice = await CONNECTOR.parse_callback(ctx, req(life.verify_on_channel(theirs)))
        # … and can no longer report it as redeemed here.
        clash = await CONNECTOR.report_redemption(
            ctx, ChannelRedemption(order_id=order.order_id, code=theirs, redeemed_at=now, reference="rd-2")
        )
        refused = CONNECTOR.callback_reply(
            ctx, notice, CallbackOutcome(status="refused", reason="already redeemed")
        )
    assert {r.status for r in reports} == {"ok"} and reports[0].channel_ref == "v-rd-1"
    assert life.codes[ours]["state"] == "verified_by_merchant"
    assert notice.type == "code.redeemed" and notice.redemption is not None
    assert (notice.redemption.code, notice.redemption.store) == (theirs, "poi-1")
    assert clash.status == "rejected" and not clash.retryable and "already verified" in clash.detail
    assert ALREADY_VERIFIED == 2119001
    assert json.loads(refused.body)["data"]["result"] == 2


async def test_report_redemption_failures(life, config):
    now = dt.datetime.now(dt.UTC)
    unknown = ChannelRedemption(order_id="o", code="NOPE", redeemed_at=now, reference="r")
    async with channel_context(config) as ctx:
        rejected = await CONNECTOR.report_redemption(ctx, unknown)
        life.fail_next(status=503)
        outage = await CONNECTOR.report_redemption(ctx, unknown)
        life.fail_next_with({"data": {"error_code": 2100004, "description": "system busy"}})
        busy = await CONNECTOR.report_redemption(ctx, unknown)
        life.delay_next(3.0)
        slow = await CONNECTOR.report_redemption(ctx, unknown)
        life.fail_next(status=200, body=b"<html>gateway</html>")
        garbled = await CONNECTOR.report_redemption(ctx, unknown)
    assert rejected.status == "rejected" and not rejected.retryable
    for result in (outage, busy, slow, garbled):
        assert result.status == "failed" and result.retryable, result


async def test_refund_requests_are_parsed_and_may_be_refused(life, config):
    call = life.buy("sku-v50", 3)
    async with channel_context(config) as ctx:
        order = (await CONNECTOR.parse_callback(ctx, req(call))).issue.order  # type: ignore[union-attr]  # code.issue
        event = await CONNECTOR.parse_callback(ctx, req(life.refund_request(order.order_id, 2)))
        agreed = CONNECTOR.callback_reply(ctx, event, CallbackOutcome(status="accepted"))
        refused = CONNECTOR.callback_reply(
            ctx, event, CallbackOutcome(status="refused", reason="codes redeemed")
        )
    assert event.type == "order.refunded" and event.refund is not None
    assert (event.refund.quantity, event.refund.amount_fen, event.refund.line_id) == (
        2,
        9800,
        order.lines[0].line_id,
    )
    assert json.loads(agreed.body)["data"]["result"] == 1
    assert json.loads(refused.body)["data"] == {"error_code": 0, "description": "codes redeemed", "result": 2}


async def test_forged_stale_and_malformed_spi_calls_are_refused(life, config):
    good = life.buy("sku-v50")
    stale = life.spi("ping", {}, timestamp=life.now() - 3600)
    async with channel_context(config) as ctx:
        for call in (
            good.tampered(),
            SignedCall(dict(good.headers, **{"X-Life-Sign": "ab" * 32}), {}, good.body, {}),
        ):
            with pytest.raises(BadCallback) as caught:
                await CONNECTOR.parse_callback(ctx, req(call))
            assert caught.value.signature
        with pytest.raises(BadCallback, match="stale"):
            await CONNECTOR.parse_callback(ctx, req(stale))
        ts = str(life.now())
        for body in (
            b"{",
            b'{"msg_id":"m","type":"issue_code","create_time":1,"content":{"order_id":"o"}}',
            b'{"msg_id":"m","type":"teleport","create_time":1}',
            b"\xff\xfe",
        ):
            headers = {
                "x-life-client-key": life.client_key,
                "x-life-timestamp": ts,
                "x-life-sign": hmac_hex(SECRET, f"{ts}\n".encode() + body),
            }
            with pytest.raises(BadCallback) as caught:
                await CONNECTOR.parse_callback(ctx, callback_request(headers, {}, body))
            assert not caught.value.signature
        ping = await CONNECTOR.parse_callback(ctx, req(life.spi("ping", {})))
        bad = CONNECTOR.callback_reply(ctx, None, CallbackOutcome(status="refused", reason="bad signature"))
    assert ping.type == "ping" and bad.status == 400


async def test_stock_push_and_bills(life, config):
    life.known_skus = {"sku-v50"}
    batch = StockPush(
        reference="p1",
        items=[
            StockItem(sku="sku-v50", listing_id="l1", available=120, price_fen=4900, version=2),
            StockItem(sku="sku-gone", listing_id="l2", available=1, price_fen=100, version=2),
        ],
    )
    async with channel_context(config) as ctx:
        result = await CONNECTOR.push_stock(ctx, batch)
        assert await CONNECTOR.push_stock(ctx, batch) == result
        life.fail_next(status=500)
        outage = await CONNECTOR.push_stock(ctx, batch)
        order = (await CONNECTOR.parse_callback(ctx, req(life.buy("sku-v50", 1, 4900)))).issue.order  # type: ignore[union-attr]  # code.issue
        life.record_delivery(order.order_id, order.lines[0].line_id, "x", [{"code": "c"}])
        now = dt.datetime.now(dt.UTC)
        page = await CONNECTOR.fetch_statement(
            ctx, StatementRequest(start=now - dt.timedelta(hours=1), end=now + dt.timedelta(hours=1))
        )
        pulled = await CONNECTOR.pull_orders(ctx, "c1")
    assert [(r.status, r.channel_available) for r in result.items] == [("ok", 120), ("rejected", 0)]
    assert life.skus["sku-v50"].updates == 1
    assert {(r.status, r.retryable) for r in outage.items} == {("failed", True)}
    assert [(ln.kind, ln.amount_fen, ln.commission_fen) for ln in page.lines] == [("sale", 4900, 245)]
    assert pulled.events == [] and pulled.next_cursor == "c1" and not pulled.has_more


async def test_no_secret_reaches_the_logs(life, config):
    with capture_logs() as logs:
        async with channel_context(config) as ctx:
            for status in (500, 401):
                life.fail_next(status=status)
                await CONNECTOR.check(ctx)
            life.fail_next_with({"data": {"error_code": 2190008, "description": "sign"}})
            await CONNECTOR.report_redemption(
                ctx,
                ChannelRedemption(order_id="o", code="C", redeemed_at=dt.datetime.now(dt.UTC), reference="r"),
            )
    assert logs and SECRET not in repr(logs)


class TestLocallifeConformance(
    channel_conformance(CONNECTOR, LocalLifeSimulator, entry_point="locallife_channel")
):
    """The partner conformance kit, on the local-life fake."""

    @pytest.fixture
    def connector_config(self) -> LocallifeConfig:
        return LocallifeConfig(client_key="kit-client", client_secret="kit-client-secret", account_id="kit")


class _Merchant:
    """A stand-in for kaquan's callback route on 127.0.0.1, answering with the real connector: the first
    calls fail (HTTP 500, then no answer within the platform's limit), then it issues codes."""

    def __init__(self, config: LocallifeConfig, failures: list[str]) -> None:
        self.config, self.failures, self.seen = config, failures, []
        merchant = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, out = asyncio.run(merchant.answer(headers, body))
                self.send_response(status)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/channels/acct/callback"

    async def answer(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        async with channel_context(self.config) as ctx:
            event = await CONNECTOR.parse_callback(ctx, callback_request(headers, {}, body))
            self.seen.append(event.message_id)
            failure = self.failures.pop(0) if self.failures else ""
            if failure == "500":
                return 500, b"internal"
            if failure == "slow":
                await asyncio.sleep(1.0)
            order = event.issue.order  # type: ignore[union-attr]  # code.issue carries issue
            codes = issued(order.order_id, order.lines[0].line_id, order.lines[0].quantity)
            return 200, CONNECTOR.callback_reply(
                ctx, event, CallbackOutcome(status="issued", codes=codes)
            ).body


async def test_the_platform_calls_again_with_the_same_message_until_it_has_the_codes(life, config):
    merchant = _Merchant(config, ["500", "slow"])
    try:
        call = life.buy("sku-v50", 2)
        order_id = call.message["content"]["order_id"]
        outcome = await asyncio.to_thread(life.issue_until_answered, merchant.url, order_id, limit=0.5)
        with socket.socket() as probe:  # a port nothing listens on: every call is refused
            probe.bind(("127.0.0.1", 0))
            closed = f"http://127.0.0.1:{probe.getsockname()[1]}/channels/acct/callback"
        given_up = await asyncio.to_thread(life.issue_until_answered, closed, order_id, attempts=2, limit=0.5)
    finally:
        merchant.server.shutdown()
    assert (outcome.result, outcome.calls, len(outcome.codes)) == (1, 3, 2)
    assert merchant.seen[:3] == [call.message["msg_id"]] * 3
    assert outcome.seconds[1] >= 0.5 and outcome.seconds[2] < 0.5
    assert sorted(outcome.codes) == sorted(life.codes)
    assert given_up.result is None and given_up.calls == 2
