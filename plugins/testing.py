"""The connector conformance kit: a pytest plugin (entry point ``pytest11``) for connector authors.

One line in a test module runs the whole suite against your connector::

    from plugins.testing import notifier_conformance
    from acme_notifier import AcmeNotifier

    TestAcmeNotifier = notifier_conformance(AcmeNotifier(), entry_point="acme_notifier")

The suite drives the connector through the happy path *and* through the failures an upstream really
produces: 5xx and 429 (with ``Retry-After``) answers, other 4xx, time-outs, refused and dropped
connections, slow answers and malformed bodies. It checks the result kind of each (a 5xx, a time-out
or a refused connection is a retryable ``failed``, never delivered; a 4xx other than 429 is permanent),
that a retry sends the same idempotency key (``message.reference``) upstream, that ``send`` never blocks the event loop,
and that no secret config value reaches a log (the context logger, structlog, stdlib ``logging``,
stdout/stderr), a result or an exception on any path.

Override the ``connector_config`` fixture (a config instance for a working account), ``http_handler``
(answers the connector's successful HTTP calls; no network is used) or ``unreachable_config`` (a config
whose upstream refuses connections, for connectors that do not talk HTTP through ``ctx.http``, such as
SMTP) by subclassing::

    class TestAcme(notifier_conformance(AcmeNotifier())):
        @pytest.fixture
        def connector_config(self):
            return AcmeConfig(api_key="test-key", endpoint="https://sms.example.test")

The tests are synchronous (each runs its coroutine with ``asyncio.run``), so no asyncio plugin is
needed. The ``connector_context`` fixture builds a :class:`ConnectorContext` for your own tests.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import msgspec
import pluggy
import pytest
import structlog
from structlog.testing import CapturingLogger

from plugins import hookspecs
from plugins._kit import (
    _MARK,
    _THREAD_PREFIX,
    FIXED_NOW,
    LOOP_LAG_LIMIT,
    MALFORMED_ANSWERS,
    PERMANENT_ANSWERS,
    RETRYABLE_ANSWERS,
    SECRET_NAME,
    SLOW_ANSWER_SECONDS,
    Handler,
    _capture_process_logs,
    _watch_loop,
    answer,
    fail_with,
    slow,
)
from plugins.channel_kit import (
    CALL_TIMEOUT,
    FAULTS,
    OUTAGES,
    CallRecord,
    ChannelConformance,
    ChannelSimulator,
    channel_conformance,
    run_call,
)
from plugins.context import ConnectorContext
from plugins.contracts import (
    CONNECTOR_ID,
    NOTIFICATION_CHANNELS,
    ConnectorInfo,
    DeliveryResult,
    Notification,
    config_schema,
    secret_fields,
)

SAMPLE_RECIPIENTS: dict[str, str] = {
    "email": "member@example.com",
    "sms": "+8613800138000",
    "webhook": "https://hooks.example.com/kaquan",
    "wechat": "o6_bmjrPTlm6_2sgVt7hMZOPfL2M",
    "log": "operator",
}

BAD_RECIPIENTS: tuple[str, ...] = ("", "   ", "not a valid recipient <>")

#: How long one ``send`` may take against the kit's mock upstream before the kit gives up (seconds).
SEND_TIMEOUT = 10.0


def _ok_handler(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"id": "mock-message-1", "status": "accepted"})


@dataclass
class SendRecord:
    """What one conformance send produced: the result, the logs and output, the HTTP requests, loop lag."""

    result: DeliveryResult | None
    error: BaseException | None
    logs: list[Any] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    other_logs: list[str] = field(default_factory=list)
    output: str = ""
    max_loop_lag: float = 0.0

    def log_text(self) -> str:
        """Everything the send wrote: context logger calls, structlog and stdlib logging, stdout/stderr."""
        return " ".join([*(repr(c) for c in self.logs), *self.other_logs, self.output])

    def exposed_text(self) -> str:
        """Everything an operator could see: :meth:`log_text`, the result and the error raised, if any."""
        parts = [self.log_text()]
        if self.result is not None:
            parts += [repr(self.result), str(self.result.detail), str(self.result.provider_message_id)]
        if self.error is not None:
            parts += [repr(self.error), str(self.error)]
        return " ".join(parts)

    def request_texts(self) -> list[str]:
        """Each request as text (method, URL, headers, body), for looking for a value sent upstream."""
        out = []
        for r in self.requests:
            headers = " ".join(f"{k}: {v}" for k, v in r.headers.items())
            out.append(f"{r.method} {r.url} {headers} {r.content.decode('utf-8', 'replace')}")
        return out



@asynccontextmanager
async def _context(
    config: msgspec.Struct,
    handler: Handler,
    embedded: bool,
    record: SendRecord,
) -> Any:
    async def recording(request: httpx.Request) -> httpx.Response:
        record.requests.append(request)
        reply = handler(request)
        if inspect.isawaitable(reply):
            reply = await reply
        return reply

    capture = CapturingLogger()
    log = structlog.wrap_logger(capture, processors=[]).bind(connector="conformance")
    async with httpx.AsyncClient(transport=httpx.MockTransport(recording), timeout=5.0) as http:
        yield ConnectorContext(
            tenant_id=uuid.UUID(int=1),
            config=config,
            http=http,
            log=log,
            clock=lambda: FIXED_NOW,
            embedded=embedded,
        )
    record.logs = list(capture.calls)


def run_send(
    connector: Any,
    config: msgspec.Struct,
    message: Notification,
    *,
    handler: Handler = _ok_handler,
    embedded: bool = False,
) -> SendRecord:
    """Run ``connector.send`` once in a fresh event loop; never raises (the error is recorded).

    ``handler`` answers the connector's HTTP requests (it may be ``async``, or raise an ``httpx``
    transport error such as ``httpx.ConnectError``). The record holds the result or the error, every
    log line and output, the requests and the worst event-loop lag seen while ``send`` ran.
    """
    record = SendRecord(result=None, error=None)

    async def go() -> None:
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=4, thread_name_prefix=_THREAD_PREFIX)
        )
        lags: list[float] = []
        stop = asyncio.Event()
        watchdog = asyncio.create_task(_watch_loop(lags, stop))
        await asyncio.sleep(0)  # let the watchdog take its first reading
        try:
            async with _context(config, handler, embedded, record) as ctx:
                try:
                    record.result = await asyncio.wait_for(connector.send(ctx, message), SEND_TIMEOUT)
                except TimeoutError:
                    record.error = TimeoutError(f"send did not return within {SEND_TIMEOUT:.0f} s")
                except Exception as exc:  # boundary: the connector under test; the kit reports what it raised
                    record.error = exc
        finally:
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


def _message(
    channel: str,
    to: str,
    body: str = "Hello from kaquan",
    reference: str = "conf-1",
) -> Notification:
    return Notification(
        channel=channel,
        to=to,
        subject="kaquan conformance",
        body=body,
        locale="zh-CN",
        template="conformance",
        reference=reference,
    )


# -- the upstream failures the kit plays ------------------------------------------------------------

class NotifierConformance:
    """The conformance tests of a ``notifier`` connector. Use :func:`notifier_conformance` to bind one."""

    connector: ClassVar[Any]
    entry_point: ClassVar[str | None] = None
    recipients: ClassVar[dict[str, str]] = SAMPLE_RECIPIENTS

    @pytest.fixture
    def connector_config(self) -> msgspec.Struct:
        """A config for a working account; the default is the config Struct with its defaults."""
        return self.connector.info.config()

    @pytest.fixture
    def http_handler(self) -> Handler:
        """Answers the connector's HTTP requests on the happy path (default: 200 with a JSON id)."""
        return _ok_handler

    @pytest.fixture
    def unreachable_config(self) -> msgspec.Struct | None:
        """A config whose upstream refuses connections (default ``None``: HTTP failures are played on
        ``ctx.http`` instead). Give one when the connector does not talk HTTP through ``ctx.http``."""
        return None

    # -- helpers -------------------------------------------------------------------------------------

    @property
    def channel(self) -> str:
        return sorted(self.connector.info.capabilities)[0]

    def valid_message(self, **kw: Any) -> Notification:
        return _message(self.channel, self.recipients[self.channel], **kw)

    def require_http(self, config: msgspec.Struct, handler: Handler) -> None:
        """Skip when ``send`` makes no request through ``ctx.http`` (HTTP failures do not apply)."""
        probe = run_send(self.connector, config, self.valid_message(), handler=handler)
        if not probe.requests:
            pytest.skip("send makes no request through ctx.http; HTTP failure paths do not apply")

    @staticmethod
    def describe(rec: SendRecord) -> str:
        return f"result={rec.result!r} error={rec.error!r}"

    # -- descriptor --------------------------------------------------------------------------------

    def test_descriptor_is_valid(self) -> None:
        info = self.connector.info
        assert isinstance(info, ConnectorInfo), "connector.info must be a plugins.ConnectorInfo"
        assert CONNECTOR_ID.match(info.id), f"id {info.id!r} must match {CONNECTOR_ID.pattern}"
        assert info.kind == "notifier", f"kind is {info.kind!r}, expected 'notifier'"
        assert info.display_name.strip(), "display_name must not be empty"
        assert info.capabilities, "a notifier lists the channels it delivers in capabilities"
        unknown = set(info.capabilities) - set(NOTIFICATION_CHANNELS)
        assert not unknown, f"unknown channels {sorted(unknown)}; known: {NOTIFICATION_CHANNELS}"

    def test_config_is_a_struct_with_a_schema(self, connector_config: msgspec.Struct) -> None:
        cfg_type = self.connector.info.config
        assert isinstance(cfg_type, type) and issubclass(cfg_type, msgspec.Struct), "config must be a Struct"
        assert isinstance(connector_config, cfg_type)
        schema = config_schema(cfg_type)
        assert schema["$defs"], "the config Struct must produce a JSON schema"
        stored = msgspec.json.encode(connector_config)
        assert msgspec.json.decode(stored, type=cfg_type) == connector_config, "config must round-trip JSON"

    def test_secret_fields_are_marked(self) -> None:
        cfg_type = self.connector.info.config
        marked = secret_fields(cfg_type)
        for name in cfg_type.__struct_fields__:
            if SECRET_NAME.search(name):
                assert name in marked, f"config field {name!r} looks secret; type it plugins.Secret"
        props = config_schema(cfg_type)["$defs"][cfg_type.__name__]["properties"]
        for name in marked:
            assert props[name].get("writeOnly") is True, f"secret {name!r} must be writeOnly in the schema"

    def test_platform_config_without_settings_is_none_or_a_valid_config(self) -> None:
        """An optional ``platform_config`` reads missing settings without raising, and what it returns
        decodes into the config Struct. A connector without one has nothing to check: it passes."""
        build = getattr(self.connector, "platform_config", None)
        if build is not None:
            assert not inspect.iscoroutinefunction(build), "platform_config must be a plain (sync) method"
            config = build({})
            if config is not None:
                msgspec.convert(dict(config), self.connector.info.config, strict=False)

    def test_send_is_a_coroutine_function(self) -> None:
        assert inspect.iscoroutinefunction(self.connector.send), "send must be declared `async def`"
        params = list(inspect.signature(self.connector.send).parameters)
        assert params[-2:] == ["ctx", "message"], "signature must be send(self, ctx, message)"

    # -- happy path --------------------------------------------------------------------------------

    def test_send_delivers_to_a_valid_recipient(
        self, connector_config: msgspec.Struct, http_handler: Handler
    ) -> None:
        for channel in sorted(self.connector.info.capabilities):
            rec = run_send(
                self.connector,
                connector_config,
                _message(channel, self.recipients[channel]),
                handler=http_handler,
            )
            assert rec.error is None, f"send raised {rec.error!r} on channel {channel}"
            assert isinstance(rec.result, DeliveryResult), "send must return a plugins.DeliveryResult"
            assert rec.result.accepted, f"valid {channel} recipient not accepted: {rec.result}"

    def test_a_slow_answer_is_awaited_and_accepted(
        self, connector_config: msgspec.Struct, http_handler: Handler
    ) -> None:
        self.require_http(connector_config, http_handler)
        rec = run_send(self.connector, connector_config, self.valid_message(), handler=slow(http_handler))
        assert rec.error is None, f"send raised {rec.error!r} on an answer that took {SLOW_ANSWER_SECONDS} s"
        assert rec.result is not None and rec.result.accepted, f"slow answer not accepted: {self.describe(rec)}"

    def test_bad_recipient_is_refused_without_raising(
        self, connector_config: msgspec.Struct, http_handler: Handler
    ) -> None:
        for to in BAD_RECIPIENTS:
            rec = run_send(self.connector, connector_config, _message(self.channel, to), handler=http_handler)
            assert rec.error is None, f"send raised {rec.error!r} for recipient {to!r}"
            assert isinstance(rec.result, DeliveryResult)
            assert rec.result.status in ("rejected", "failed"), f"bad recipient {to!r} gave {rec.result}"

    def test_unsupported_channel_is_rejected(self, connector_config: msgspec.Struct) -> None:
        rec = run_send(self.connector, connector_config, _message("carrier_pigeon", "someone"))
        assert rec.error is None, f"send raised {rec.error!r} for an unsupported channel"
        assert isinstance(rec.result, DeliveryResult) and rec.result.status == "rejected"

    # -- failure paths -----------------------------------------------------------------------------

    def test_server_errors_and_network_failures_are_retryable_failures(
        self, connector_config: msgspec.Struct, http_handler: Handler
    ) -> None:
        self.require_http(connector_config, http_handler)
        for name, handler in RETRYABLE_ANSWERS.items():
            rec = run_send(self.connector, connector_config, self.valid_message(), handler=handler)
            assert rec.error is None, f"{name}: send raised {rec.error!r}; return a failed result instead"
            assert isinstance(rec.result, DeliveryResult), f"{name}: send must return a DeliveryResult"
            assert not rec.result.accepted, f"{name}: reported as delivered ({rec.result.status}): {rec.result}"
            assert rec.result.status == "failed" and rec.result.retryable, (
                f"{name}: must be status='failed', retryable=True (a retry can succeed), got {rec.result}"
            )

    def test_client_errors_are_permanent(self, connector_config: msgspec.Struct, http_handler: Handler) -> None:
        self.require_http(connector_config, http_handler)
        for name, handler in PERMANENT_ANSWERS.items():
            rec = run_send(self.connector, connector_config, self.valid_message(), handler=handler)
            assert rec.error is None, f"{name}: send raised {rec.error!r}; return a result instead"
            assert isinstance(rec.result, DeliveryResult), f"{name}: send must return a DeliveryResult"
            assert not rec.result.accepted, f"{name}: reported as delivered: {rec.result}"
            assert rec.result.status == "rejected" or not rec.result.retryable, (
                f"{name}: a 4xx other than 429 is permanent (rejected, or failed with retryable=False), "
                f"got {rec.result}"
            )

    def test_malformed_bodies_do_not_break_send(
        self, connector_config: msgspec.Struct, http_handler: Handler
    ) -> None:
        self.require_http(connector_config, http_handler)
        for name, handler in MALFORMED_ANSWERS.items():
            rec = run_send(self.connector, connector_config, self.valid_message(), handler=handler)
            assert rec.error is None, f"{name}: send raised {rec.error!r}"
            assert isinstance(rec.result, DeliveryResult), f"{name}: send must return a DeliveryResult"
            assert rec.result.status != "rejected", f"{name}: a 2xx answer is not a permanent refusal"

    def test_unreachable_upstream_is_a_retryable_failure(
        self,
        connector_config: msgspec.Struct,
        http_handler: Handler,
        unreachable_config: msgspec.Struct | None,
    ) -> None:
        if unreachable_config is None:
            self.require_http(connector_config, http_handler)
            config, handler = connector_config, RETRYABLE_ANSWERS["connection refused"]
        else:
            config, handler = unreachable_config, http_handler
        rec = run_send(self.connector, config, self.valid_message(), handler=handler)
        assert rec.error is None, f"send raised {rec.error!r} on a refused connection"
        assert isinstance(rec.result, DeliveryResult)
        assert rec.result.status == "failed" and rec.result.retryable, f"refused connection gave {rec.result}"

    def test_retry_sends_the_same_idempotency_key(
        self, connector_config: msgspec.Struct, http_handler: Handler
    ) -> None:
        self.require_http(connector_config, http_handler)
        key = f"kq-idem-{uuid.uuid4().hex}"
        message = self.valid_message(reference=key)
        first = run_send(self.connector, connector_config, message, handler=RETRYABLE_ANSWERS["HTTP 500"])
        retry = run_send(self.connector, connector_config, message, handler=http_handler)
        assert first.result is not None and first.result.retryable, f"HTTP 500: {self.describe(first)}"
        assert retry.result is not None and retry.result.accepted, f"retry: {self.describe(retry)}"
        for attempt, rec in (("first attempt", first), ("retry", retry)):
            assert rec.requests, f"{attempt}: no request went upstream"
            assert any(key in text for text in rec.request_texts()), (
                f"{attempt}: the upstream never saw the idempotency key message.reference {key!r}; send it verbatim "
                "(an Idempotency-Key header or the provider's client reference) so a retry is not sent twice"
            )

    def test_send_never_blocks_the_event_loop(
        self,
        connector_config: msgspec.Struct,
        http_handler: Handler,
        unreachable_config: msgspec.Struct | None,
    ) -> None:
        runs: list[tuple[str, msgspec.Struct, Notification, Handler]] = [
            ("valid recipient", connector_config, self.valid_message(), http_handler),
            ("slow answer", connector_config, self.valid_message(), slow(http_handler)),
            ("HTTP 503", connector_config, self.valid_message(), RETRYABLE_ANSWERS["HTTP 503 with Retry-After"]),
            ("read time-out", connector_config, self.valid_message(), RETRYABLE_ANSWERS["read time-out"]),
            ("bad recipient", connector_config, _message(self.channel, ""), http_handler),
        ]
        if unreachable_config is not None:
            runs.append(("unreachable upstream", unreachable_config, self.valid_message(), http_handler))
        for name, config, message, handler in runs:
            # A busy machine can delay the loop once; a blocking connector blocks it every time.
            lags = [run_send(self.connector, config, message, handler=handler).max_loop_lag for _ in range(2)]
            assert min(lags) <= LOOP_LAG_LIMIT, (
                f"{name}: send blocked the event loop for {min(lags):.2f} s (limit {LOOP_LAG_LIMIT} s); "
                "await I/O, and wrap blocking calls in asyncio.to_thread (never time.sleep)"
            )

    def test_secrets_never_reach_logs_or_results_on_any_path(
        self,
        connector_config: msgspec.Struct,
        http_handler: Handler,
        unreachable_config: msgspec.Struct | None,
    ) -> None:
        canaries = {name: f"kq-canary-{name}-7f3a" for name in secret_fields(type(connector_config))}

        def with_canaries(config: msgspec.Struct) -> msgspec.Struct:
            return msgspec.structs.replace(config, **canaries) if canaries else config

        body = "Your invite link: https://kaquan.example/console/invite/kqi_canary_body_9c1e"
        to = self.recipients[self.channel]
        paths: list[tuple[str, msgspec.Struct, str, Handler]] = [
            ("valid recipient", connector_config, to, http_handler),
            ("bad recipient", connector_config, "", http_handler),
            *((name, connector_config, to, h) for name, h in RETRYABLE_ANSWERS.items()),
            *((name, connector_config, to, h) for name, h in PERMANENT_ANSWERS.items()),
            *((name, connector_config, to, h) for name, h in MALFORMED_ANSWERS.items()),
        ]
        if unreachable_config is not None:
            paths.append(("unreachable upstream", unreachable_config, to, http_handler))
        for name, config, recipient, handler in paths:
            message = _message(self.channel, recipient, body=body)
            rec = run_send(self.connector, with_canaries(config), message, handler=handler)
            exposed = rec.exposed_text()
            for field_name, value in canaries.items():
                assert value not in exposed, (
                    f"{name}: the secret config field {field_name!r} reached a log, the output, the result "
                    "or an exception"
                )
            assert "kqi_canary_body_9c1e" not in rec.log_text(), (
                f"{name}: the message body reached the log outside embedded mode"
            )
            assert recipient == "" or recipient not in rec.log_text(), (
                f"{name}: log the recipient masked (plugins.mask_recipient)"
            )

    # -- registration ------------------------------------------------------------------------------

    def test_entry_point_registers_the_connector(self) -> None:
        if self.entry_point is None:
            pytest.skip("no entry_point given to notifier_conformance")
        pm = pluggy.PluginManager("kaquan")
        pm.add_hookspecs(hookspecs)
        loaded = pm.load_setuptools_entrypoints("kaquan", name=self.entry_point)
        assert loaded == 1, f"entry point {self.entry_point!r} not found in group 'kaquan'; is it installed?"
        pm.check_pending()
        ids = [c.info.id for group in pm.hook.kaquan_connectors() for c in group]
        assert self.connector.info.id in ids, (
            f"{self.entry_point!r} does not return {self.connector.info.id!r}"
        )


def notifier_conformance(
    connector: Any,
    *,
    entry_point: str | None = None,
    recipients: dict[str, str] | None = None,
) -> type[NotifierConformance]:
    """A test class running the notifier conformance suite on ``connector`` (an instance or a class).

    ``entry_point``: the name under ``[project.entry-points.kaquan]`` to check the registration of.
    ``recipients``: valid sample recipients per channel, if the defaults do not suit your provider.
    """
    instance = connector() if isinstance(connector, type) else connector
    attrs: dict[str, Any] = {
        "connector": instance,
        "entry_point": entry_point,
        "recipients": {**SAMPLE_RECIPIENTS, **(recipients or {})},
    }
    return type(f"Test{type(instance).__name__}Conformance", (NotifierConformance,), attrs)


@pytest.fixture
def connector_context() -> Callable[..., ConnectorContext]:
    """A factory of :class:`ConnectorContext` for your own connector tests (HTTP answered by ``handler``)."""

    def factory(
        config: msgspec.Struct,
        *,
        handler: Handler = _ok_handler,
        tenant_id: uuid.UUID | None = None,
        embedded: bool = False,
    ) -> ConnectorContext:
        return ConnectorContext(
            tenant_id=tenant_id or uuid.UUID(int=1),
            config=config,
            http=httpx.AsyncClient(transport=httpx.MockTransport(handler), timeout=5.0),
            log=structlog.get_logger("kaquan.connector.test"),
            clock=lambda: FIXED_NOW,
            embedded=embedded,
        )

    return factory


__all__ = [
    "BAD_RECIPIENTS",
    "CALL_TIMEOUT",
    "FAULTS",
    "FIXED_NOW",
    "LOOP_LAG_LIMIT",
    "MALFORMED_ANSWERS",
    "OUTAGES",
    "PERMANENT_ANSWERS",
    "RETRYABLE_ANSWERS",
    "SAMPLE_RECIPIENTS",
    "SECRET_NAME",
    "SEND_TIMEOUT",
    "SLOW_ANSWER_SECONDS",
    "CallRecord",
    "ChannelConformance",
    "ChannelSimulator",
    "Handler",
    "NotifierConformance",
    "SendRecord",
    "answer",
    "channel_conformance",
    "connector_context",
    "fail_with",
    "notifier_conformance",
    "run_call",
    "run_send",
    "slow",
]
