"""The connector conformance kit: a pytest plugin (entry point ``pytest11``) for connector authors.

One line in a test module runs the whole suite against your connector::

    from plugins.testing import notifier_conformance
    from acme_notifier import AcmeNotifier

    TestAcmeNotifier = notifier_conformance(AcmeNotifier(), entry_point="acme_notifier")

Override the ``connector_config`` fixture (a config instance for a working account, e.g. a local test
server) or ``http_handler`` (answers the connector's HTTP calls; no network is used) by subclassing::

    class TestAcme(notifier_conformance(AcmeNotifier())):
        @pytest.fixture
        def connector_config(self):
            return AcmeConfig(api_key="test-key", endpoint="https://sms.example.test")

The tests are synchronous (each runs its coroutine with ``asyncio.run``), so no asyncio plugin is
needed. The ``connector_context`` fixture builds a :class:`ConnectorContext` for your own tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import re
import uuid
from collections.abc import Callable
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

#: Field names that must be marked ``Secret`` when they appear in a config Struct.
SECRET_NAME = re.compile(r"(password|passwd|secret|token|api_?key|private_?key|credential|signature)", re.I)

SAMPLE_RECIPIENTS: dict[str, str] = {
    "email": "member@example.com",
    "sms": "+8613800138000",
    "webhook": "https://hooks.example.com/kaquan",
    "wechat": "o6_bmjrPTlm6_2sgVt7hMZOPfL2M",
    "log": "operator",
}

BAD_RECIPIENTS: tuple[str, ...] = ("", "   ", "not a valid recipient <>")

FIXED_NOW = dt.datetime(2026, 1, 1, 8, 0, tzinfo=dt.UTC)


def _ok_handler(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"id": "mock-message-1", "status": "accepted"})


@dataclass
class SendRecord:
    """What one conformance send produced: the result, the log calls and the HTTP requests."""

    result: DeliveryResult | None
    error: BaseException | None
    logs: list[Any] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def log_text(self) -> str:
        return " ".join(repr(c) for c in self.logs)


@asynccontextmanager
async def _context(
    config: msgspec.Struct,
    handler: Callable[[httpx.Request], httpx.Response],
    embedded: bool,
    record: SendRecord,
) -> Any:
    def recording(request: httpx.Request) -> httpx.Response:
        record.requests.append(request)
        return handler(request)

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
    handler: Callable[[httpx.Request], httpx.Response] = _ok_handler,
    embedded: bool = False,
) -> SendRecord:
    """Run ``connector.send`` once in a fresh event loop; never raises (the error is recorded)."""
    record = SendRecord(result=None, error=None)

    async def go() -> None:
        async with _context(config, handler, embedded, record) as ctx:
            try:
                record.result = await connector.send(ctx, message)
            except Exception as exc:
                record.error = exc

    asyncio.run(go())
    return record


def _message(
    channel: str, to: str, body: str = "Hello from kaquan", reference: str = "conf-1"
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
    def http_handler(self) -> Callable[[httpx.Request], httpx.Response]:
        """Answers the connector's HTTP requests (default: 200 with a JSON id)."""
        return _ok_handler

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

    def test_send_is_a_coroutine_function(self) -> None:
        assert inspect.iscoroutinefunction(self.connector.send), "send must be declared `async def`"
        params = list(inspect.signature(self.connector.send).parameters)
        assert params[-2:] == ["ctx", "message"], "signature must be send(self, ctx, message)"

    # -- behaviour -------------------------------------------------------------------------------------

    def test_send_delivers_to_a_valid_recipient(
        self, connector_config: msgspec.Struct, http_handler: Callable[[httpx.Request], httpx.Response]
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

    def test_bad_recipient_is_refused_without_raising(
        self, connector_config: msgspec.Struct, http_handler: Callable[[httpx.Request], httpx.Response]
    ) -> None:
        channel = sorted(self.connector.info.capabilities)[0]
        for to in BAD_RECIPIENTS:
            rec = run_send(self.connector, connector_config, _message(channel, to), handler=http_handler)
            assert rec.error is None, f"send raised {rec.error!r} for recipient {to!r}"
            assert isinstance(rec.result, DeliveryResult)
            assert rec.result.status in ("rejected", "failed"), f"bad recipient {to!r} gave {rec.result}"

    def test_unsupported_channel_is_rejected(self, connector_config: msgspec.Struct) -> None:
        rec = run_send(self.connector, connector_config, _message("carrier_pigeon", "someone"))
        assert rec.error is None, f"send raised {rec.error!r} for an unsupported channel"
        assert isinstance(rec.result, DeliveryResult) and rec.result.status == "rejected"

    def test_secrets_and_body_never_reach_the_log(
        self, connector_config: msgspec.Struct, http_handler: Callable[[httpx.Request], httpx.Response]
    ) -> None:
        canaries = {name: f"kq-canary-{name}-7f3a" for name in secret_fields(type(connector_config))}
        config = msgspec.structs.replace(connector_config, **canaries) if canaries else connector_config
        channel = sorted(self.connector.info.capabilities)[0]
        body = "Your invite link: https://kaquan.example/console/invite/kqi_canary_body_9c1e"
        for to in (self.recipients[channel], ""):
            rec = run_send(self.connector, config, _message(channel, to, body=body), handler=http_handler)
            text = rec.log_text() + (rec.result.detail if rec.result else "")
            for value in canaries.values():
                assert value not in text, "a secret config value reached the log or the result"
            assert "kqi_canary_body_9c1e" not in text, (
                "the message body reached the log outside embedded mode"
            )
            assert to == "" or to not in rec.log_text(), "log the recipient masked (plugins.mask_recipient)"

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
        handler: Callable[[httpx.Request], httpx.Response] = _ok_handler,
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
