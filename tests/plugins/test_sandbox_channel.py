"""The built-in ``sandbox`` channel: its shop's life (orders, refunds, redemptions), callbacks and failures."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import pytest
import structlog

from plugins import (
    BadCallback,
    CallbackOutcome,
    ChannelRedemption,
    CodeDelivery,
    ConnectorContext,
    IssuedCode,
    StatementRequest,
    StockItem,
    StockPush,
)
from plugins.builtin import sandbox_channel as sandbox
from plugins.builtin.sandbox_channel import CONNECTOR, SandboxConfig, SandboxUnavailable

NOW = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
SECRET = "sandbox-test-secret"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def context(account: str, **config: Any) -> ConnectorContext:
    return ConnectorContext(
        tenant_id=uuid.UUID(int=7),
        config=SandboxConfig(signing_secret=SECRET, **config),
        http=httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(599))),
        log=structlog.get_logger("test.sandbox"),
        clock=lambda: NOW,
        account_id=account,
    )


@pytest.fixture
def account() -> str:
    account_id = str(uuid.uuid4())
    yield account_id
    sandbox.WORLD.reset(account_id)


def stock(account: str, available: int = 10, *, version: int = 1, sku: str = "SKU-A", **config: Any) -> Any:
    push = StockPush(
        reference=f"push-{version}",
        items=[StockItem(sku=sku, listing_id="L1", available=available, price_fen=9_000, version=version)],
    )
    return run(CONNECTOR.push_stock(context(account, **config), push))


def drain(ctx: ConnectorContext, cursor: str = "") -> tuple[list[Any], str, int]:
    events, pages = [], 0
    while True:
        page = run(CONNECTOR.pull_orders(ctx, cursor))
        pages += 1
        events += page.events
        cursor = page.next_cursor
        if not page.has_more:
            return events, cursor, pages


def test_check_needs_a_signing_secret(account):
    assert run(CONNECTOR.check(context(account))).ok
    bare = ConnectorContext(
        tenant_id=None,
        config=SandboxConfig(),
        http=httpx.AsyncClient(),
        log=structlog.get_logger(),
        account_id=account,
    )
    result = run(CONNECTOR.check(bare))
    assert not result.ok and "signing secret" in result.detail


def test_stock_push_is_per_item_idempotent_and_keeps_the_newer_version(account):
    first = stock(account, 10, version=2)
    assert [(r.sku, r.status, r.channel_available) for r in first.items] == [("SKU-A", "ok", 10)]
    assert stock(account, 10, version=2).items == first.items  # the same push again changes nothing
    late = stock(account, 99, version=1)  # an older push arriving late
    assert late.items[0].channel_available == 10
    assert sandbox.WORLD.shop(account).skus["SKU-A"].available == 10
    bad = run(
        CONNECTOR.push_stock(
            context(account),
            StockPush(
                reference="p",
                items=[
                    StockItem(sku="bad sku", listing_id="L2", available=1, price_fen=100),
                    StockItem(sku="SKU-B", listing_id="L3", available=4, price_fen=100),
                ],
            ),
        )
    )
    assert [r.status for r in bad.items] == ["rejected", "ok"]


def test_orders_pull_in_pages_without_gaps_and_refunds_follow(account):
    stock(account, 30)
    placed = [sandbox.place_order(account, "SKU-A", 1, now=NOW).order_id for _ in range(7)]
    ctx = context(account, page_size=3)
    events, cursor, pages = drain(ctx)
    assert pages == 3 and [e.order.order_id for e in events] == placed
    assert run(CONNECTOR.pull_orders(ctx, cursor)).events == []
    assert sandbox.WORLD.shop(account).skus["SKU-A"].available == 23
    notice = sandbox.refund(account, placed[0], now=NOW)
    more, _, _ = drain(ctx, cursor)
    assert [(e.type, e.refund) for e in more] == [("order.cancelled", notice)]
    with pytest.raises(ValueError):
        sandbox.place_order(account, "SKU-A", 24)


def test_delivery_is_once_under_six_retries_and_lost_answers(account):
    stock(account, 5)
    order = sandbox.place_order(account, "SKU-A", 2, now=NOW)
    line = order.lines[0]
    codes = [IssuedCode(line_id=line.line_id, code=f"KQ-{i}") for i in range(2)]
    delivery = CodeDelivery(order_id=order.order_id, line_id=line.line_id, codes=codes, reference="deliver:1")
    sandbox.fail_next(account, "server_error")
    sandbox.fail_next(account, "answer_lost")
    results = [run(CONNECTOR.deliver_codes(context(account), delivery)) for _ in range(6)]
    assert [(r.status, r.retryable) for r in results[:2]] == [("failed", True), ("failed", True)]
    assert all(r.ok for r in results[2:])
    assert sandbox.WORLD.shop(account).received[(order.order_id, line.line_id)] == codes
    other = CodeDelivery(
        order_id=order.order_id, line_id=line.line_id, codes=codes[:1] * 2, reference="deliver:2"
    )
    assert run(CONNECTOR.deliver_codes(context(account), other)).status == "rejected"
    unknown = CodeDelivery(order_id="nope", line_id="nope-1", codes=codes, reference="deliver:3")
    assert run(CONNECTOR.deliver_codes(context(account), unknown)).status == "rejected"


def test_a_code_is_never_redeemed_on_both_sides(account):
    stock(account, 5)
    order = sandbox.place_order(account, "SKU-A", 2, now=NOW)
    line = order.lines[0]
    codes = [IssuedCode(line_id=line.line_id, code=c) for c in ("C-1", "C-2")]
    run(
        CONNECTOR.deliver_codes(
            context(account),
            CodeDelivery(order_id=order.order_id, line_id=line.line_id, codes=codes, reference="d"),
        )
    )
    assert sandbox.redeem_on_channel(account, "C-1", now=NOW) is not None
    assert sandbox.redeem_on_channel(account, "C-1", now=NOW) is None
    ours = ChannelRedemption(order_id=order.order_id, code="C-1", redeemed_at=NOW, reference="r-1")
    assert run(CONNECTOR.report_redemption(context(account), ours)).status == "rejected"
    ours2 = ChannelRedemption(order_id=order.order_id, code="C-2", redeemed_at=NOW, reference="r-2")
    assert [run(CONNECTOR.report_redemption(context(account), ours2)).status for _ in range(3)] == ["ok"] * 3
    assert sandbox.redeem_on_channel(account, "C-2", now=NOW) is None


def test_callbacks_are_verified(account):
    stock(account, 5)
    sandbox.place_order(account, "SKU-A", 1, now=NOW)
    event = sandbox.WORLD.shop(account).events[-1]
    ctx = context(account)
    request = sandbox.signed_callback(SECRET, event, now=NOW)
    assert run(CONNECTOR.parse_callback(ctx, request)) == event
    tampered = sandbox.signed_callback(SECRET, event, now=NOW)
    for bad in (
        type(tampered)(headers=tampered.headers, query={}, body=tampered.body + b" ", received_at=NOW),
        sandbox.signed_callback("another-secret", event, now=NOW),
        sandbox.signed_callback(SECRET, event, now=NOW - dt.timedelta(hours=1)),
        type(tampered)(headers={}, query={}, body=tampered.body, received_at=NOW),
    ):
        with pytest.raises(BadCallback) as refused:
            run(CONNECTOR.parse_callback(ctx, bad))
        assert refused.value.signature
    with pytest.raises(BadCallback) as malformed:
        run(CONNECTOR.parse_callback(ctx, sandbox.signed_callback(SECRET, body=b"{nope", now=NOW)))
    assert not malformed.value.signature


def test_issue_requests_are_answered_with_codes_the_shop_records(account):
    stock(account, 5)
    event = sandbox.issue_request(account, "SKU-A", 1, now=NOW)
    assert event.type == "code.issue" and event.issue is not None
    order = event.issue.order
    codes = [IssuedCode(line_id=order.lines[0].line_id, code="TP-1", pin="1234")]
    reply = CONNECTOR.callback_reply(context(account), event, CallbackOutcome(status="issued", codes=codes))
    assert reply.status == 200 and b"TP-1" in reply.body
    assert sandbox.record_issued(account, order.order_id, reply) == codes
    query = sandbox.query_request(account, order.order_id, now=NOW)
    assert query.query is not None and query.query.order_id == order.order_id
    assert sandbox.redeem_on_channel(account, "TP-1", now=NOW) is not None
    assert [c.state for c in sandbox.WORLD.shop(account).codes_of(order.order_id)] == ["redeemed"]
    refused = CONNECTOR.callback_reply(
        context(account), None, CallbackOutcome(status="refused", reason="bad")
    )
    assert refused.status == 401


def deliver_all(ctx: ConnectorContext, events: list[Any]) -> None:
    for order in (e.order for e in events if e.type == "order.paid"):
        line = order.lines[0]
        codes = [IssuedCode(line_id=line.line_id, code=f"{order.order_id}-{i}") for i in range(line.quantity)]
        delivery = CodeDelivery(
            order_id=order.order_id, line_id=line.line_id, codes=codes, reference=order.order_id
        )
        assert run(CONNECTOR.deliver_codes(ctx, delivery)).ok


def test_the_shop_lives_on_its_own_when_asked():
    account = "sandbox-life-test"  # a fixed account: the shop's choices are drawn from it, so they repeat
    sandbox.WORLD.reset(account)
    stock(account, 60)
    ctx = context(account, orders_per_pull=4, refund_percent=40, redeem_percent=50, page_size=100)
    events, cursor, _ = drain(ctx)
    assert len([e for e in events if e.type == "order.paid"]) == 4
    kinds: set[str] = set()
    for _ in range(5):
        deliver_all(ctx, events)
        events, cursor, _ = drain(ctx, cursor)
        kinds |= {e.type for e in events}
    assert {"order.paid", "order.refunded", "code.redeemed"} <= kinds
    shop = sandbox.WORLD.shop(account)
    sold = sum(o.lines[0].quantity for o in shop.orders.values())
    assert sum(s.available for s in shop.skus.values()) + sold == 60
    assert all(
        shop.redeemed.get(c.code) != "channel" or shop.refunded.get(key, 0) < len(codes)
        for key, codes in shop.received.items()
        for c in codes
    )
    page = run(CONNECTOR.fetch_statement(ctx, StatementRequest(start=NOW, end=NOW + dt.timedelta(days=1))))
    kinds_st = {line.kind for line in page.lines}
    assert "sale" in kinds_st and "refund" in kinds_st
    assert all(line.commission_fen == line.amount_fen // 10 for line in page.lines if line.kind == "sale")
    sandbox.WORLD.reset(account)


def test_outages_on_pulls_raise_and_leave_the_cursor(account):
    stock(account, 5)
    sandbox.place_order(account, "SKU-A", 1, now=NOW)
    sandbox.fail_next(account, "timeout")
    with pytest.raises(SandboxUnavailable):
        run(CONNECTOR.pull_orders(context(account), ""))
    assert len(run(CONNECTOR.pull_orders(context(account), "")).events) == 1
    sandbox.fail_next(account, "rate_limited")
    pushed = stock(account, 3, version=5)
    assert [(r.status, r.retryable) for r in pushed.items] == [("failed", True)]
