"""The conformance kit of the ``sales_channel`` kind (re-exported by :mod:`plugins.testing`).

A channel connector talks to one channel's API in the channel's own wire format, so the kit cannot play the
channel alone: you give it a :class:`ChannelSimulator`, a small in-memory double of your channel (its HTTP
API as an ``httpx`` handler, and the few things the kit asks of it: take an order, send a callback, say
what it shows and what the buyer received). The kit then plays the failures a channel really produces on
top of it (time-outs, 5xx, 429, refused connections, an answer lost after the work was done) and checks::

    from plugins.testing import ChannelSimulator, channel_conformance

    class AcmeShopSimulator(ChannelSimulator):
        ...

    TestAcmeShop = channel_conformance(AcmeShopChannel(), AcmeShopSimulator, entry_point="acme_shop")

- stock push: one result per item, idempotent (the same push again, and a retry after a lost answer,
  leave the channel showing what was pushed);
- orders by cursor: every order exactly once, in order, across pages, after a failed pull and on re-reads;
- callbacks: a genuine one parses, with the same ``message_id`` on every redelivery (so kaquan drops the
  repeats); a tampered body, missing signature headers or another account's secret raise
  :class:`plugins.BadCallback` (``signature=True``); a signed but malformed body raises it too;
- delivery: six attempts of one delivery (a 5xx, a time-out, an answer lost after the channel delivered,
  then three more) give the buyer each code exactly once;
- redemption reports: the same, once per ``reference``; issue requests (三方码) answered with the codes;
- every time-out, 5xx, 429 and refused connection: a retryable ``failed`` (or ``ok=False`` for ``check``;
  a pull or a statement page raises, or returns nothing and the same cursor), never a crash, never a skip;
- no call blocks the event loop; no secret config value reaches a log, the output, a result or an
  exception on any of these paths.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import msgspec
import pytest
import structlog
from structlog.testing import CapturingLogger

from plugins._kit import (
    _HTML,
    _JSON,
    _MARK,
    _THREAD_PREFIX,
    FIXED_NOW,
    LOOP_LAG_LIMIT,
    _capture_process_logs,
    _watch_loop,
    check_config_struct,
    check_entry_point,
    check_secret_fields,
)
from plugins.channels import (
    CHANNEL_CAPABILITIES,
    BadCallback,
    CallbackOutcome,
    CallbackReply,
    CallbackRequest,
    CallResult,
    ChannelEvent,
    ChannelOrder,
    ChannelRedemption,
    CheckResult,
    CodeDelivery,
    IssuedCode,
    OrderPage,
    StatementPage,
    StatementRequest,
    StockItem,
    StockPush,
    StockPushResult,
    channel_methods,
)
from plugins.context import ConnectorContext
from plugins.contracts import CONNECTOR_ID, ConnectorInfo, secret_fields

#: The failures a simulator plays (see :meth:`ChannelSimulator.fail_next`).
FAULTS: tuple[str, ...] = (
    "timeout",
    "server_error",
    "bad_gateway",
    "rate_limited",
    "unreachable",
    "answer_lost",
)
#: The failures after which nothing happened on the channel: each must give a retryable failure.
OUTAGES: tuple[str, ...] = ("timeout", "server_error", "bad_gateway", "rate_limited", "unreachable")
#: How many calls an outage lasts: "every request fails" for the length of one kit call.
OUTAGE_REQUESTS = 1000
#: How long one connector call may take against the simulator before the kit gives up (seconds).
CALL_TIMEOUT = 10.0


def _fault_answer(fault: str, request: httpx.Request) -> httpx.Response:
    if fault == "timeout":
        raise httpx.ReadTimeout("timed out", request=request)
    if fault == "unreachable":
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
    if fault == "server_error":
        return httpx.Response(500, content=b'{"error": "internal"}', headers=_JSON)
    if fault == "bad_gateway":
        return httpx.Response(502, content=_HTML, headers={"content-type": "text/html"})
    return httpx.Response(429, content=b'{"error": "slow down"}', headers={**_JSON, "retry-after": "2"})


class ChannelSimulator:
    """Your channel, in memory, as the kit drives it. Subclass it and implement what your capabilities need.

    The kit makes one simulator per test with the account's ``config`` (the secrets it signs callbacks
    with), the ``account_id`` the connector's ``ctx.account_id`` carries, and ``now``, the clock the
    connector's ``ctx.now()`` reads. Keep the channel's state on the instance.

    HTTP channels implement :meth:`handle` (answer the connector's requests like the channel's API); the
    kit routes ``ctx.http`` through :meth:`transport`, which plays the failures :meth:`fail_next` queued.
    A channel reached another way (an SDK, a queue, in process) overrides :meth:`fail_next`,
    :meth:`pending_faults` and :meth:`clear_faults` to play them there.
    """

    #: SKUs the channel sells: the kit pushes stock to them and places orders on them.
    skus: ClassVar[tuple[str, ...]] = ("KIT-SKU-1", "KIT-SKU-2", "KIT-SKU-3")
    #: Orders the kit places to read them back in pages: more than one page of your channel must hold.
    orders_for_paging: ClassVar[int] = 12

    def __init__(self, config: msgspec.Struct, account_id: str, now: Callable[[], dt.datetime]) -> None:
        self.config = config
        self.account_id = account_id
        self.now = now
        self._faults: deque[str] = deque()

    # -- the channel's API (HTTP channels) -------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response | Awaitable[httpx.Response]:
        """Answer one of the connector's requests as the channel's API does (may be ``async``)."""
        return httpx.Response(404, json={"error": "this simulator has no HTTP API"})

    async def transport(self, request: httpx.Request) -> httpx.Response:
        """What ``ctx.http`` reaches: the next queued failure, or :meth:`handle`. ``answer_lost`` lets the
        channel do the work and then times out, as when the answer is lost on the way back."""
        fault = self._faults.popleft() if self._faults else None
        if fault is not None and fault != "answer_lost":
            return _fault_answer(fault, request)
        reply = self.handle(request)
        if inspect.isawaitable(reply):
            reply = await reply
        if fault == "answer_lost":
            raise httpx.ReadTimeout("timed out after the channel answered", request=request)
        return reply

    def fail_next(self, fault: str, times: int = 1) -> None:
        """Make the channel's next ``times`` requests fail with ``fault`` (one of :data:`FAULTS`)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        self._faults.extend([fault] * times)

    def pending_faults(self) -> int:
        """Failures queued and not played yet (the kit checks the connector reached the channel)."""
        return len(self._faults)

    def clear_faults(self) -> None:
        self._faults.clear()

    # -- what the kit asks of the channel ------------------------------------------------------------

    def place_order(self, sku: str, quantity: int) -> ChannelOrder:
        """A buyer pays for ``quantity`` units of ``sku``; the order is then visible to ``pull_orders``."""
        raise NotImplementedError("place_order: take a paid order on the simulated channel")

    def order_callback(self, order_id: str) -> CallbackRequest:
        """The callback the channel sends (and sends again until answered) for that order's payment."""
        raise NotImplementedError("order_callback: the channel's signed callback for a paid order")

    def signed(self, body: bytes) -> CallbackRequest | None:
        """A callback carrying ``body`` as is, with a valid signature (``None``: skip the malformed-body
        checks, for a channel whose signature cannot cover arbitrary bytes)."""
        return None

    def shown(self, sku: str) -> int | None:
        """Units the channel shows for ``sku`` (``None``: the channel does not know it)."""
        raise NotImplementedError("shown: the units the channel shows for a SKU")

    def invalid_sku(self) -> str | None:
        """A SKU the channel refuses in a stock push (``None``: skip the per-item refusal check)."""
        return None

    def received(self, order_id: str, line_id: str) -> list[str]:
        """The codes the buyer of that order line received, once per time received."""
        raise NotImplementedError("received: the codes the buyer of an order line received")

    def refund(self, order_id: str) -> None:
        """The buyer gets the whole order refunded (capability ``refunds``)."""
        raise NotImplementedError("refund: refund an order on the simulated channel")

    def issue_callback(self, sku: str, quantity: int) -> CallbackRequest:
        """A buyer pays and the channel asks for third-party codes (capability ``third_party_codes``)."""
        raise NotImplementedError("issue_callback: the channel's code.issue request")

    def read_issue_reply(self, order_id: str, reply: CallbackReply) -> list[str]:
        """The codes the channel reads from kaquan's answer to its issue request, as it hands them out."""
        raise NotImplementedError("read_issue_reply: the codes the channel reads from the reply")

    def hold_codes(self, order_id: str, line_id: str, codes: list[str]) -> None:
        """Make the channel hold ``codes`` for the order line as if kaquan had issued them (for the
        redemption checks of a channel without capability ``delivery``)."""
        raise NotImplementedError("hold_codes: give the channel codes of an order line")

    def redemptions_recorded(self, code: str) -> int:
        """How many redemptions of ``code`` reported by kaquan the channel recorded."""
        raise NotImplementedError("redemptions_recorded: redemptions the channel recorded for a code")


@dataclass
class CallRecord:
    """What one connector call produced: its result or error, the logs and output, requests, loop lag."""

    method: str
    result: Any = None
    error: BaseException | None = None
    logs: list[Any] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    other_logs: list[str] = field(default_factory=list)
    output: str = ""
    max_loop_lag: float = 0.0

    def log_text(self) -> str:
        return " ".join([*(repr(c) for c in self.logs), *self.other_logs, self.output])

    def exposed_text(self) -> str:
        """Everything an operator could see: logs, output, the result and the error raised."""
        parts = [self.log_text(), repr(self.result)]
        if self.error is not None:
            parts += [repr(self.error), str(self.error)]
        return " ".join(parts)

    def describe(self) -> str:
        return f"{self.method}: result={self.result!r} error={self.error!r}"


def channel_context(
    config: msgspec.Struct,
    simulator: ChannelSimulator,
    http: httpx.AsyncClient,
    log: Any,
) -> ConnectorContext:
    """The context the kit calls a channel connector with (clock and account id shared with the simulator)."""
    return ConnectorContext(
        tenant_id=uuid.UUID(int=1),
        config=config,
        http=http,
        log=log,
        clock=simulator.now,
        account_id=simulator.account_id,
    )


def run_call(
    connector: Any, method: str, config: msgspec.Struct, simulator: ChannelSimulator, *args: Any
) -> CallRecord:
    """``connector.<method>(ctx, *args)`` once in a fresh event loop (awaited when it is a coroutine),
    against ``simulator``; never raises (the error is recorded)."""
    record = CallRecord(method=method)

    async def go() -> None:
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=4, thread_name_prefix=_THREAD_PREFIX)
        )
        lags: list[float] = []
        stop = asyncio.Event()
        watchdog = asyncio.create_task(_watch_loop(lags, stop))
        await asyncio.sleep(0)

        async def recording(request: httpx.Request) -> httpx.Response:
            record.requests.append(request)
            return await simulator.transport(request)

        capture = CapturingLogger()
        log = structlog.wrap_logger(capture, processors=[]).bind(connector="conformance")
        try:
            async with httpx.AsyncClient(transport=httpx.MockTransport(recording), timeout=5.0) as http:
                ctx = channel_context(config, simulator, http, log)
                try:
                    answer = getattr(connector, method)(ctx, *args)
                    if inspect.isawaitable(answer):
                        answer = await asyncio.wait_for(answer, CALL_TIMEOUT)
                    record.result = answer
                except TimeoutError:
                    record.error = TimeoutError(f"{method} did not return within {CALL_TIMEOUT:.0f} s")
                except Exception as exc:  # boundary: the connector under test; the kit reports what it raised
                    record.error = exc
        finally:
            record.logs = list(capture.calls)
            stop.set()
            await watchdog
            record.max_loop_lag = max(lags, default=0.0)

    marked = _MARK.active
    _MARK.active = True
    try:
        with _capture_process_logs(record):
            asyncio.run(go())
    finally:
        _MARK.active = marked
    return record


def _tampered(request: CallbackRequest) -> dict[str, CallbackRequest]:
    """Callbacks that are not genuine: body changed, signature gone (headers and query stripped)."""
    body = bytearray(request.body)
    if body:
        middle = len(body) // 2
        body[middle] = body[middle] ^ 0x01
    return {
        "a body changed by one bit": msgspec.structs.replace(request, body=bytes(body) or b"x"),
        "a body with a byte appended": msgspec.structs.replace(request, body=request.body + b" "),
        "no signature (headers and query stripped)": msgspec.structs.replace(
            request,
            headers={"content-type": request.headers.get("content-type", "application/json")},
            query={},
        ),
    }


class ChannelConformance:
    """The conformance tests of a ``sales_channel`` connector. Use :func:`channel_conformance` to bind one."""

    connector: ClassVar[Any]
    simulator_type: ClassVar[type[ChannelSimulator]]
    entry_point: ClassVar[str | None] = None

    @pytest.fixture
    def connector_config(self) -> msgspec.Struct:
        """A config for a working account on the simulator (default: the config Struct's defaults)."""
        return self.connector.info.config()

    @pytest.fixture
    def simulator(self, connector_config: msgspec.Struct) -> ChannelSimulator:
        """A fresh simulated channel for one test, with its own account id."""
        return self.new_simulator(connector_config)

    # -- helpers -------------------------------------------------------------------------------------

    def new_simulator(self, config: msgspec.Struct) -> ChannelSimulator:
        return self.simulator_type(config, f"kit-{uuid.uuid4()}", lambda: FIXED_NOW)

    def can(self, *capabilities: str) -> bool:
        return set(capabilities) <= set(self.connector.info.capabilities)

    def require(self, *capabilities: str) -> None:
        if not self.can(*capabilities):
            pytest.skip(f"the connector does not declare {', '.join(capabilities)}")

    def call(self, sim: ChannelSimulator, config: msgspec.Struct, method: str, *args: Any) -> CallRecord:
        return run_call(self.connector, method, config, sim, *args)

    def ok_call(self, sim: ChannelSimulator, config: msgspec.Struct, method: str, *args: Any) -> Any:
        """Call and insist it worked (no exception, no failed or rejected result)."""
        rec = self.call(sim, config, method, *args)
        assert rec.error is None, f"{rec.describe()}: raised on the happy path"
        status = getattr(rec.result, "status", "ok")
        assert status == "ok", f"{rec.describe()}: not ok on the happy path"
        return rec.result

    def stock_up(self, sim: ChannelSimulator, config: msgspec.Struct, available: int = 100) -> None:
        """Put every simulator SKU on sale (when the connector pushes stock)."""
        if not self.can("stock_push"):
            return
        items = [
            StockItem(sku=s, listing_id=f"L{i}", available=available, price_fen=1_000 + i, version=1)
            for i, s in enumerate(sim.skus)
        ]
        result = self.ok_call(sim, config, "push_stock", StockPush(reference="kit-stock-up", items=items))
        assert [r.status for r in result.items] == ["ok"] * len(items), f"stock push refused: {result}"

    def paid_order(self, sim: ChannelSimulator, config: msgspec.Struct, quantity: int = 2) -> ChannelOrder:
        self.stock_up(sim, config)
        return sim.place_order(sim.skus[0], quantity)

    @staticmethod
    def codes_for(order: ChannelOrder) -> list[IssuedCode]:
        line = order.lines[0]
        tag = uuid.uuid4().hex[:8]
        return [
            IssuedCode(line_id=line.line_id, code=f"KQ{tag}{i:02d}", pin=f"{i:04d}")
            for i in range(line.quantity)
        ]

    def pull_all(
        self, sim: ChannelSimulator, config: msgspec.Struct, cursor: str = "", limit: int = 200
    ) -> tuple[list[ChannelEvent], str, int]:
        """Every event after ``cursor`` (following ``has_more``): events, the last cursor, pages read."""
        events: list[ChannelEvent] = []
        for pages in range(1, limit + 1):
            page = self.ok_call(sim, config, "pull_orders", cursor)
            assert isinstance(page, OrderPage), f"pull_orders must return an OrderPage, got {page!r}"
            events += page.events
            cursor = page.next_cursor
            if not page.has_more:
                return events, cursor, pages
        raise AssertionError(f"pull_orders still has_more after {limit} pages")

    @contextmanager
    def outage(self, sim: ChannelSimulator, fault: str) -> Iterator[None]:
        """Every request to the channel fails with ``fault`` while the block runs; at least one must."""
        sim.fail_next(fault, OUTAGE_REQUESTS)
        try:
            yield
        finally:
            played = OUTAGE_REQUESTS - sim.pending_faults()
            sim.clear_faults()
        assert played > 0, f"{fault}: the connector never reached the channel"

    # -- descriptor ----------------------------------------------------------------------------------

    def test_descriptor_is_valid(self) -> None:
        info = self.connector.info
        assert isinstance(info, ConnectorInfo), "connector.info must be a plugins.ConnectorInfo"
        assert CONNECTOR_ID.match(info.id), f"id {info.id!r} must match {CONNECTOR_ID.pattern}"
        assert info.kind == "sales_channel", f"kind is {info.kind!r}, expected 'sales_channel'"
        assert info.display_name.strip(), "display_name must not be empty"
        unknown = set(info.capabilities) - set(CHANNEL_CAPABILITIES)
        assert not unknown, f"unknown capabilities {sorted(unknown)}; known: {CHANNEL_CAPABILITIES}"

    def test_config_is_a_struct_with_a_schema(self, connector_config: msgspec.Struct) -> None:
        check_config_struct(self.connector, connector_config)

    def test_secret_fields_are_marked(self) -> None:
        check_secret_fields(self.connector)

    def test_methods_match_the_capabilities(self) -> None:
        for name, is_async in channel_methods(self.connector.info.capabilities).items():
            fn = getattr(self.connector, name, None)
            assert callable(fn), f"{name} is missing (its capability is declared)"
            assert inspect.iscoroutinefunction(fn) == is_async, (
                f"{name} must be {'`async def`' if is_async else 'a plain (sync) method'}"
            )

    def test_entry_point_registers_the_connector(self) -> None:
        check_entry_point(self.connector, self.entry_point, "channel_conformance")

    # -- happy paths ----------------------------------------------------------------------------------

    def test_check_reaches_the_channel(
        self, simulator: ChannelSimulator, connector_config: msgspec.Struct
    ) -> None:
        rec = self.call(simulator, connector_config, "check")
        assert rec.error is None, f"check raised {rec.error!r}"
        assert isinstance(rec.result, CheckResult), "check must return a plugins.CheckResult"
        assert rec.result.ok, f"check failed against a working channel: {rec.result}"

    def test_stock_push_is_idempotent(
        self, simulator: ChannelSimulator, connector_config: msgspec.Struct
    ) -> None:
        self.require("stock_push")
        sim, config = simulator, connector_config
        items = [
            StockItem(sku=s, listing_id=f"L{i}", available=7 + i, price_fen=990 + i, version=3)
            for i, s in enumerate(sim.skus)
        ]
        push = StockPush(reference="kit-push-1", items=items)
        for attempt in ("first push", "the same push again"):
            result = self.ok_call(sim, config, "push_stock", push)
            assert isinstance(result, StockPushResult), f"{attempt}: push_stock must return a StockPushResult"
            assert sorted(r.sku for r in result.items) == sorted(sim.skus), f"{attempt}: one result per item"
            for r in result.items:
                assert r.status == "ok", f"{attempt}: {r}"
                wanted = next(i.available for i in items if i.sku == r.sku)
                assert r.channel_available in (None, wanted), (
                    f"{attempt}: {r.sku} shows {r.channel_available}"
                )
            assert {s: sim.shown(s) for s in sim.skus} == {i.sku: i.available for i in items}, attempt
        newer = StockPush(
            reference="kit-push-2",
            items=[msgspec.structs.replace(i, available=i.available + 5, version=4) for i in items],
        )
        sim.fail_next("answer_lost")
        lost = self.call(sim, config, "push_stock", newer)
        assert lost.error is None, f"push_stock raised {lost.error!r} when the answer was lost"
        assert all(r.status == "failed" and r.retryable for r in lost.result.items), (
            f"a push whose answer was lost must be a retryable failure per item: {lost.result}"
        )
        self.ok_call(sim, config, "push_stock", newer)
        assert {s: sim.shown(s) for s in sim.skus} == {i.sku: i.available for i in newer.items}, (
            "after a retry of a push whose answer was lost, the channel must show what was pushed"
        )

    def test_stock_push_answers_per_item(
        self, simulator: ChannelSimulator, connector_config: msgspec.Struct
    ) -> None:
        self.require("stock_push")
        bad = simulator.invalid_sku()
        if bad is None:
            pytest.skip("the simulator names no SKU the channel refuses (invalid_sku)")
        good = simulator.skus[0]
        push = StockPush(
            reference="kit-push-mixed",
            items=[
                StockItem(sku=bad, listing_id="L-bad", available=3, price_fen=500, version=1),
                StockItem(sku=good, listing_id="L-good", available=4, price_fen=500, version=1),
            ],
        )
        rec = self.call(simulator, connector_config, "push_stock", push)
        assert rec.error is None, f"push_stock raised {rec.error!r} when the channel refused one item"
        by_sku = {r.sku: r for r in rec.result.items}
        assert by_sku[bad].status == "rejected", f"the refused SKU must be rejected: {by_sku[bad]}"
        assert by_sku[good].status == "ok", f"one refused item must not fail the others: {by_sku[good]}"
        assert simulator.shown(good) == 4

    def test_order_cursor_has_no_gaps_under_pagination(
        self, simulator: ChannelSimulator, connector_config: msgspec.Struct
    ) -> None:
        self.require("order_pull")
        sim, config = simulator, connector_config
        self.stock_up(sim, config)
        placed = [
            sim.place_order(sim.skus[i % len(sim.skus)], 1).order_id for i in range(sim.orders_for_paging)
        ]
        events, cursor, pages = self.pull_all(sim, config)
        paid = [e.order.order_id for e in events if e.type == "order.paid" and e.order is not None]
        assert paid == placed, (
            f"pulled orders {paid} are not the placed ones {placed}, once each and in order"
        )
        ids = [e.message_id for e in events]
        assert len(ids) == len(set(ids)), "a message_id repeats across pages"
        assert pages >= 2, (
            f"{len(placed)} orders fit in one page: raise orders_for_paging or lower the simulator's page size"
        )
        first = self.ok_call(sim, config, "pull_orders", "")
        again = self.ok_call(sim, config, "pull_orders", "")
        assert [e.message_id for e in first.events] == [e.message_id for e in again.events], (
            "reading the same cursor twice must give the same events (kaquan re-reads after a crash)"
        )
        assert self.pull_all(sim, config, cursor)[0] == [], "the last cursor must give no event again"
        later = [sim.place_order(sim.skus[0], 1).order_id for _ in range(3)]
        newer, _, _ = self.pull_all(sim, config, cursor)
        assert [e.order.order_id for e in newer if e.order is not None] == later, (
            "new orders after the cursor"
        )

    def test_a_failed_pull_never_skips_an_order(
        self, simulator: ChannelSimulator, connector_config: msgspec.Struct
    ) -> None:
        self.require("order_pull")
        sim, config = simulator, connector_config
        self.stock_up(sim, config)
        placed = [sim.place_order(sim.skus[0], 1).order_id for _ in range(sim.orders_for_paging)]
        page = self.ok_call(sim, config, "pull_orders", "")
        seen, cursor = list(page.events), page.next_cursor
        for fault in OUTAGES:
            with self.outage(sim, fault):
                rec = self.call(sim, config, "pull_orders", cursor)
            if rec.error is None:
                assert isinstance(rec.result, OrderPage), f"{fault}: {rec.describe()}"
                assert rec.result.events == [] and rec.result.next_cursor == cursor, (
                    f"{fault}: a failed pull must raise, or return no event and the same cursor: {rec.result}"
                )
        rest, _, _ = self.pull_all(sim, config, cursor)
        paid = [e.order.order_id for e in seen + rest if e.type == "order.paid" and e.order is not None]
        assert paid == placed, "orders were skipped or repeated around failed pulls"

    def test_a_genuine_callback_parses_with_one_message_id_on_every_redelivery(
        self, simulator: ChannelSimulator, connector_config: msgspec.Struct
    ) -> None:
        self.require("callbacks")
        sim, config = simulator, connector_config
        order = self.paid_order(sim, config)
        events = []
        for _ in range(6):  # the channel redelivers until answered: kaquan drops repeats by message_id
            rec = self.call(sim, config, "parse_callback", sim.order_callback(order.order_id))
            assert rec.error is None, f"a genuine callback was refused: {rec.error!r}"
            assert isinstance(rec.result, ChannelEvent), "parse_callback must return a plugins.ChannelEvent"
            events.append(rec.result)
        event = events[0]
        assert event.type == "order.paid" and event.order is not None, f"not an order.paid event: {event}"
        assert event.order.order_id == order.order_id
        assert [(ln.sku, ln.quantity) for ln in event.order.lines] == [
            (ln.sku, ln.quantity) for ln in order.lines
        ]
        assert event.occurred_at.tzinfo is not None, "occurred_at must be timezone-aware"
        assert {e.message_id for e in events} == {event.message_id}, (
            "every redelivery of one callback must carry the same message_id, or kaquan cannot drop repeats"
        )
        other = self.paid_order(sim, config, 1)
        second = self.call(sim, config, "parse_callback", sim.order_callback(other.order_id)).result
        assert isinstance(second, ChannelEvent) and second.message_id != event.message_id, (
            "two different callbacks must have different message_ids"
        )

    def test_a_bad_signature_is_refused(
        self, simulator: ChannelSimulator, connector_config: msgspec.Struct
    ) -> None:
        self.require("callbacks")
        sim, config = simulator, connector_config
        genuine = sim.order_callback(self.paid_order(sim, config).order_id)
        cases = [(name, config, request) for name, request in _tampered(genuine).items()]
        secrets = secret_fields(type(config))
        if secrets:
            other = msgspec.structs.replace(config, **{n: f"kit-another-account-{n}" for n in secrets})
            cases.append(("checked with another account's secret", other, genuine))
        for name, used, request in cases:
            rec = self.call(sim, used, "parse_callback", request)
            assert isinstance(rec.error, BadCallback), (
                f"{name}: parse_callback must raise plugins.BadCallback, got {rec.describe()}"
            )
            assert rec.error.signature, (
                f"{name}: BadCallback(signature=True) for a callback that is not genuine"
            )

    def test_malformed_callbacks_are_refused(
        self, simulator: ChannelSimulator, connector_config: msgspec.Struct
    ) -> None:
        self.require("callbacks")
        for body in (b"{not json", b"", b"[]", b"\xff\xfe\x00garbage"):
            request = simulator.signed(body)
            if request is None:
                pytest.skip("the simulator cannot sign arbitrary bodies (signed returns None)")
            rec = self.call(simulator, connector_config, "parse_callback", request)
            assert isinstance(rec.error, BadCallback), (
                f"signed body {body!r}: parse_callback must raise plugins.BadCallback, got {rec.describe()}"
            )

    def test_callback_replies(self, simulator: ChannelSimulator, connector_config: msgspec.Struct) -> None:
        self.require("callbacks")
        sim, config = simulator, connector_config
        order = self.paid_order(sim, config)
        event = self.call(sim, config, "parse_callback", sim.order_callback(order.order_id)).result
        assert isinstance(event, ChannelEvent)
        for status in ("accepted", "duplicate"):
            rec = self.call(sim, config, "callback_reply", event, CallbackOutcome(status=status))
            assert isinstance(rec.result, CallbackReply), f"callback_reply({status}): {rec.describe()}"
            assert 200 <= rec.result.status < 300, (
                f"{status}: the channel must read success (a duplicate too), got HTTP {rec.result.status}"
            )
        for ev in (event, None):
            rec = self.call(
                sim, config, "callback_reply", ev, CallbackOutcome(status="refused", reason="no stock")
            )
            assert rec.error is None and isinstance(rec.result, CallbackReply), f"refused: {rec.describe()}"

    def test_delivery_is_idempotent_under_six_retries(
        self, simulator: ChannelSimulator, connector_config: msgspec.Struct
    ) -> None:
        self.require("delivery")
        sim, config = simulator, connector_config
        order = self.paid_order(sim, config)
        line = order.lines[0]
        codes = self.codes_for(order)
        delivery = CodeDelivery(
            order_id=order.order_id, line_id=line.line_id, codes=codes, reference="kit-dl-1"
        )
        results = []
        for attempt in range(6):  # 5xx, time-out, delivered but the answer lost, then three more
            fault = ("server_error", "timeout", "answer_lost")[attempt] if attempt < 3 else None
            if fault is not None:
                sim.fail_next(fault)
            rec = self.call(sim, config, "deliver_codes", delivery)
            sim.clear_faults()
            assert rec.error is None, f"attempt {attempt + 1}: deliver_codes raised {rec.error!r}"
            assert isinstance(rec.result, CallResult), "deliver_codes must return a plugins.CallResult"
            results.append(rec.result)
        for attempt, result in enumerate(results[:3], 1):
            assert result.status == "failed" and result.retryable, f"attempt {attempt} (a failure): {result}"
        for attempt, result in enumerate(results[3:], 4):
            assert result.ok, f"attempt {attempt}: a delivery already made must answer ok, got {result}"
        received = sim.received(order.order_id, line.line_id)
        assert sorted(received) == sorted(c.code for c in codes), (
            f"the buyer must receive each code exactly once over six attempts; received {received}"
        )

    def test_delivery_for_an_unknown_order_is_rejected(
        self, simulator: ChannelSimulator, connector_config: msgspec.Struct
    ) -> None:
        self.require("delivery")
        codes = [IssuedCode(line_id="KIT-NO-SUCH-1", code="KQ-UNKNOWN-1")]
        delivery = CodeDelivery(
            order_id="KIT-NO-SUCH", line_id="KIT-NO-SUCH-1", codes=codes, reference="kit-dl-x"
        )
        rec = self.call(simulator, connector_config, "deliver_codes", delivery)
        assert rec.error is None, f"deliver_codes raised {rec.error!r} for an unknown order"
        assert rec.result.status == "rejected", (
            f"an order the channel does not know is rejected: {rec.result}"
        )

    def test_issue_requests_are_answered_with_the_codes(
        self, simulator: ChannelSimulator, connector_config: msgspec.Struct
    ) -> None:
        self.require("third_party_codes")
        sim, config = simulator, connector_config
        self.stock_up(sim, config)
        rec = self.call(sim, config, "parse_callback", sim.issue_callback(sim.skus[0], 2))
        assert rec.error is None and isinstance(rec.result, ChannelEvent), rec.describe()
        event = rec.result
        assert event.type == "code.issue" and event.issue is not None, f"not a code.issue event: {event}"
        codes = self.codes_for(event.issue.order)
        reply = self.call(sim, config, "callback_reply", event, CallbackOutcome(status="issued", codes=codes))
        assert isinstance(reply.result, CallbackReply) and 200 <= reply.result.status < 300, reply.describe()
        read = sim.read_issue_reply(event.issue.order.order_id, reply.result)
        assert sorted(read) == sorted(c.code for c in codes), f"the channel read {read} from the reply"

    def test_refunds_reach_kaquan(
        self, simulator: ChannelSimulator, connector_config: msgspec.Struct
    ) -> None:
        self.require("refunds", "order_pull")
        sim, config = simulator, connector_config
        order = self.paid_order(sim, config)
        _, cursor, _ = self.pull_all(sim, config)
        sim.refund(order.order_id)
        events, _, _ = self.pull_all(sim, config, cursor)
        refunds = [e.refund for e in events if e.type in ("order.refunded", "order.cancelled") and e.refund]
        assert [(r.order_id, r.quantity) for r in refunds] == [(order.order_id, order.lines[0].quantity)], (
            f"the refund must reach kaquan once, as order.refunded or order.cancelled: {events}"
        )

    def test_redemption_reports_are_idempotent(
        self, simulator: ChannelSimulator, connector_config: msgspec.Struct
    ) -> None:
        self.require("redemption_sync")
        sim, config = simulator, connector_config
        order = self.paid_order(sim, config)
        codes = self.codes_for(order)
        line = order.lines[0]
        if self.can("delivery"):
            self.ok_call(
                sim,
                config,
                "deliver_codes",
                CodeDelivery(
                    order_id=order.order_id, line_id=line.line_id, codes=codes, reference="kit-dl-r"
                ),
            )
        else:
            sim.hold_codes(order.order_id, line.line_id, [c.code for c in codes])
        redemption = ChannelRedemption(
            order_id=order.order_id,
            code=codes[0].code,
            redeemed_at=FIXED_NOW,
            reference="kit-rd-1",
            store="kit store",
        )
        results = []
        for attempt in range(6):
            if attempt < 3:
                sim.fail_next(("server_error", "timeout", "answer_lost")[attempt])
            rec = self.call(sim, config, "report_redemption", redemption)
            sim.clear_faults()
            assert rec.error is None and isinstance(rec.result, CallResult), (
                f"attempt {attempt + 1}: {rec.describe()}"
            )
            results.append(rec.result)
        assert all(r.status == "failed" and r.retryable for r in results[:3]), results[:3]
        assert all(r.ok for r in results[3:]), f"a redemption already reported must answer ok: {results[3:]}"
        assert sim.redemptions_recorded(codes[0].code) == 1, "the channel must record the redemption once"

    def test_statement_pages_without_repeats(
        self, simulator: ChannelSimulator, connector_config: msgspec.Struct
    ) -> None:
        self.require("statements")
        sim, config = simulator, connector_config
        if self.can("delivery"):
            for _ in range(3):
                order = self.paid_order(sim, config, 1)
                self.ok_call(
                    sim,
                    config,
                    "deliver_codes",
                    CodeDelivery(
                        order_id=order.order_id,
                        line_id=order.lines[0].line_id,
                        codes=self.codes_for(order),
                        reference=f"kit-dl-{order.order_id}",
                    ),
                )
        start, end = FIXED_NOW - dt.timedelta(days=1), FIXED_NOW + dt.timedelta(days=1)
        cursor, ids = "", []
        for _ in range(500):
            page = self.ok_call(
                sim, config, "fetch_statement", StatementRequest(start=start, end=end, cursor=cursor)
            )
            assert isinstance(page, StatementPage), (
                f"fetch_statement must return a StatementPage, got {page!r}"
            )
            for line in page.lines:
                assert line.occurred_at.tzinfo is not None and start <= line.occurred_at < end, line
                ids.append(line.line_id)
            cursor = page.next_cursor
            if not page.has_more:
                break
        assert len(ids) == len(set(ids)), "a statement line repeats across pages"

    # -- failure paths ---------------------------------------------------------------------------------

    def failure_calls(
        self, sim: ChannelSimulator, config: msgspec.Struct
    ) -> list[tuple[str, tuple[Any, ...]]]:
        """One call of every method the connector has, with arguments the channel would accept."""
        calls: list[tuple[str, tuple[Any, ...]]] = [("check", ())]
        if self.can("stock_push"):
            item = StockItem(sku=sim.skus[0], listing_id="L0", available=2, price_fen=800, version=9)
            calls.append(("push_stock", (StockPush(reference="kit-fail", items=[item]),)))
        if self.can("order_pull"):
            calls.append(("pull_orders", ("",)))
        if self.can("delivery") or self.can("redemption_sync"):
            order = self.paid_order(sim, config, 1)
            codes = self.codes_for(order)
            line_id = order.lines[0].line_id
            if self.can("delivery"):
                calls.append(
                    (
                        "deliver_codes",
                        (
                            CodeDelivery(
                                order_id=order.order_id, line_id=line_id, codes=codes, reference="kit-dl-f"
                            ),
                        ),
                    )
                )
            if self.can("redemption_sync"):
                calls.append(
                    (
                        "report_redemption",
                        (
                            ChannelRedemption(
                                order_id=order.order_id,
                                code=codes[0].code,
                                redeemed_at=FIXED_NOW,
                                reference="kit-rd-f",
                            ),
                        ),
                    )
                )
        if self.can("statements"):
            calls.append(
                (
                    "fetch_statement",
                    (StatementRequest(start=FIXED_NOW - dt.timedelta(days=1), end=FIXED_NOW, cursor=""),),
                )
            )
        return calls

    @staticmethod
    def assert_retryable(fault: str, rec: CallRecord, args: tuple[Any, ...]) -> None:
        name = f"{fault} on {rec.method}"
        result = rec.result
        if rec.method in ("pull_orders", "fetch_statement"):
            if rec.error is None:
                cursor = args[0] if rec.method == "pull_orders" else args[0].cursor
                empty = not getattr(result, "events", getattr(result, "lines", None))
                assert empty and result.next_cursor == cursor, (
                    f"{name}: raise, or return nothing and the same cursor (never skip): {result!r}"
                )
            return
        assert rec.error is None, f"{name}: raised {rec.error!r}; return a failed result instead"
        if rec.method == "check":
            assert isinstance(result, CheckResult) and not result.ok, (
                f"{name}: check must say ok=False: {result}"
            )
        elif rec.method == "push_stock":
            assert all(r.status == "failed" and r.retryable for r in result.items), (
                f"{name}: every item must be status='failed', retryable=True, got {result}"
            )
        else:
            assert result.status == "failed" and result.retryable, (
                f"{name}: must be status='failed', retryable=True (a retry can succeed), got {result}"
            )

    def test_timeouts_and_5xx_are_retryable_failures(
        self, simulator: ChannelSimulator, connector_config: msgspec.Struct
    ) -> None:
        sim, config = simulator, connector_config
        for method, args in self.failure_calls(sim, config):
            for fault in OUTAGES:
                with self.outage(sim, fault):
                    rec = self.call(sim, config, method, *args)
                self.assert_retryable(fault, rec, args)

    def test_calls_never_block_the_event_loop(
        self, simulator: ChannelSimulator, connector_config: msgspec.Struct
    ) -> None:
        sim, config = simulator, connector_config
        for method, args in self.failure_calls(sim, config):
            for fault in (None, "timeout"):
                lags = []
                for _ in range(2):  # a busy machine can delay the loop once; a blocking connector every time
                    if fault is not None:
                        sim.fail_next(fault)
                    lags.append(self.call(sim, config, method, *args).max_loop_lag)
                    sim.clear_faults()
                assert min(lags) <= LOOP_LAG_LIMIT, (
                    f"{method} ({fault or 'ok'}) blocked the event loop for {min(lags):.2f} s; await I/O and "
                    "wrap blocking calls in asyncio.to_thread"
                )

    def test_secrets_never_reach_logs_or_results_on_any_path(self, connector_config: msgspec.Struct) -> None:
        secrets = secret_fields(type(connector_config))
        canaries = {name: f"kq-canary-{name}-7f3a" for name in secrets}
        config = msgspec.structs.replace(connector_config, **canaries) if canaries else connector_config
        sim = self.new_simulator(config)
        records: list[tuple[str, CallRecord]] = []
        for method, args in self.failure_calls(sim, config):
            records.append(("ok", self.call(sim, config, method, *args)))
            for fault in OUTAGES:
                with self.outage(sim, fault):
                    records.append((fault, self.call(sim, config, method, *args)))
        if self.can("callbacks"):
            genuine = sim.order_callback(self.paid_order(sim, config, 1).order_id)
            for name, request in [("genuine", genuine), *_tampered(genuine).items()]:
                records.append((name, self.call(sim, config, "parse_callback", request)))
            if canaries:
                other = msgspec.structs.replace(config, **{n: "kit-other-secret" for n in secrets})
                records.append(("another secret", self.call(sim, other, "parse_callback", genuine)))
        for path, rec in records:
            exposed = rec.exposed_text()
            for field_name, value in canaries.items():
                assert value not in exposed, (
                    f"{rec.method} ({path}): the secret config field {field_name!r} reached a log, the output, "
                    "the result or an exception"
                )


def channel_conformance(
    connector: Any, simulator: type[ChannelSimulator], *, entry_point: str | None = None
) -> type[ChannelConformance]:
    """A test class running the channel conformance suite on ``connector`` (an instance or a class),
    against ``simulator`` (your :class:`ChannelSimulator` subclass). ``entry_point``: the name under
    ``[project.entry-points.kaquan]`` to check the registration of."""
    instance = connector() if isinstance(connector, type) else connector
    attrs: dict[str, Any] = {"connector": instance, "simulator_type": simulator, "entry_point": entry_point}
    return type(f"Test{type(instance).__name__}Conformance", (ChannelConformance,), attrs)
