"""What the conformance kits of every connector kind share (:mod:`plugins.testing`): capturing what connector
code logs or prints, watching the event loop, and the upstream answers and failures the kits play."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import io
import logging
import re
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Protocol

import httpx
import msgspec
import pluggy
import pytest
import structlog

from plugins import hookspecs
from plugins.contracts import config_schema, secret_fields


class LogSink(Protocol):
    """Where :func:`_capture_process_logs` writes: log lines, and what was printed."""

    other_logs: list[str]
    output: str


#: Field names that must be marked ``Secret`` when they appear in a config Struct.
SECRET_NAME = re.compile(r"(password|passwd|secret|token|api_?key|private_?key|credential|signature)", re.I)

FIXED_NOW = dt.datetime(2026, 1, 1, 8, 0, tzinfo=dt.UTC)

#: The longest a ``send`` may keep the event loop busy without yielding (seconds).
LOOP_LAG_LIMIT = 0.2

#: How long the "slow answer" upstream waits before answering (seconds).
SLOW_ANSWER_SECONDS = 0.3

#: What answers the mock upstream's requests: a plain or an ``async`` function (httpx.MockTransport's own).
Handler = (
    Callable[[httpx.Request], httpx.Response] | Callable[[httpx.Request], Coroutine[Any, Any, httpx.Response]]
)


#: Threads running connector code: the loop's own thread and its ``asyncio.to_thread`` executor.
_THREAD_PREFIX = "kq-conformance"


class _ThreadMark(threading.local):
    """Set on the thread that calls :func:`run_send` while the send runs."""

    active: bool = False


_MARK = _ThreadMark()


def _connector_thread() -> bool:
    """Whether the current thread runs connector code (not a test server's or another thread)."""
    return threading.current_thread().name.startswith(_THREAD_PREFIX) or _MARK.active


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if not _connector_thread():
            return
        try:
            text = record.getMessage()
        except Exception:  # boundary: formatting a connector's log record (its arguments are plugin objects)
            text = f"{record.msg!r} {record.args!r}"
        extra = {k: v for k, v in vars(record).items() if k not in _LOG_RECORD_ATTRS}
        self.sink.append(f"{record.name} {text} {record.exc_text or ''} {extra!r}")


_LOG_RECORD_ATTRS = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message"}


@contextlib.contextmanager
def _capture_process_logs(record: LogSink) -> Iterator[None]:
    """Capture structlog (global config), stdlib logging and stdout/stderr while connector code runs."""
    root = logging.getLogger()
    handler = _ListHandler(record.other_logs)
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)

    def capture(logger: Any, method: str, event_dict: Any) -> Any:
        if _connector_thread():
            record.other_logs.append(f"{method} {event_dict!r}")
        raise structlog.DropEvent

    # Bound loggers keep a reference to the processors list: change it in place, as structlog.testing does.
    config = structlog.get_config()
    processors = config["processors"]
    old_processors = list(processors)
    processors.clear()
    processors.append(capture)
    # Every level: a secret logged at debug level leaks as soon as someone turns debug logging on.
    structlog.configure(processors=processors, wrapper_class=structlog.make_filtering_bound_logger(0))
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            yield
    finally:
        processors.clear()
        processors.extend(old_processors)
        structlog.configure(processors=processors, wrapper_class=config["wrapper_class"])
        root.removeHandler(handler)
        root.setLevel(old_level)
        record.output = out.getvalue()


async def _watch_loop(lags: list[float], stop: asyncio.Event, tick: float = 0.01) -> None:
    """Measure how late the loop wakes this coroutine: a blocked loop shows as lag."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        await asyncio.sleep(tick)
        lags.append(loop.time() - started - tick)


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Handler:
    """A handler that answers every request with ``status`` and ``body``."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers or {})

    return handler


def fail_with(error: type[httpx.TransportError], message: str) -> Handler:
    """A handler whose requests fail in transport (time-out, refused or dropped connection)."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise error(message, request=request)

    return handler


def slow(handler: Handler, seconds: float = SLOW_ANSWER_SECONDS) -> Handler:
    """``handler``, answering after ``seconds`` (the loop stays free meanwhile)."""

    async def delayed(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(seconds)
        answer_ = handler(request)
        if inspect.isawaitable(answer_):
            answer_ = await answer_
        return answer_

    return delayed


_JSON = {"content-type": "application/json"}
_HTML = b"<html><body><h1>502 Bad Gateway</h1></body></html>"

#: Answers that must give a retryable ``failed`` result (never delivered, never a permanent refusal).
RETRYABLE_ANSWERS: dict[str, Handler] = {
    "HTTP 500": answer(500, b'{"error": "internal"}', _JSON),
    "HTTP 502 (HTML page)": answer(502, _HTML, {"content-type": "text/html"}),
    "HTTP 503 with Retry-After": answer(503, b"", {"retry-after": "5"}),
    "HTTP 504": answer(504),
    "HTTP 429 with Retry-After": answer(429, b'{"error": "slow down"}', {**_JSON, "retry-after": "2"}),
    "read time-out": fail_with(httpx.ReadTimeout, "timed out"),
    "connect time-out": fail_with(httpx.ConnectTimeout, "timed out"),
    "connection refused": fail_with(httpx.ConnectError, "[Errno 111] Connection refused"),
    "connection dropped": fail_with(httpx.RemoteProtocolError, "Server disconnected without a response"),
}

#: Answers that are permanent: the same request will never succeed (``rejected``, or not retryable).
PERMANENT_ANSWERS: dict[str, Handler] = {
    f"HTTP {status}": answer(status, b'{"error": "refused"}', _JSON) for status in (400, 401, 403, 404, 422)
}

#: 2xx answers with a body the connector cannot parse: no exception, and never a permanent refusal.
MALFORMED_ANSWERS: dict[str, Handler] = {
    "2xx, invalid JSON": answer(200, b'{"id": "m-1",', _JSON),
    "2xx, JSON array": answer(200, b"[]", _JSON),
    "2xx, JSON null": answer(200, b"null", _JSON),
    "2xx, not UTF-8": answer(200, b"\xff\xfe\x00garbage", _JSON),
    "2xx, empty body": answer(200, b"", _JSON),
    "2xx, HTML": answer(200, _HTML, {"content-type": "text/html"}),
}


# -- checks every kind's kit makes -----------------------------------------------------------------------


def check_config_struct(connector: Any, config: msgspec.Struct) -> None:
    """The config is a msgspec Struct with a JSON schema, ``config`` is one, and it round-trips JSON."""
    cfg_type = connector.info.config
    assert isinstance(cfg_type, type) and issubclass(cfg_type, msgspec.Struct), "config must be a Struct"
    assert isinstance(config, cfg_type)
    schema = config_schema(cfg_type)
    assert schema["$defs"], "the config Struct must produce a JSON schema"
    stored = msgspec.json.encode(config)
    assert msgspec.json.decode(stored, type=cfg_type) == config, "config must round-trip JSON"


def check_secret_fields(connector: Any) -> None:
    """Fields that look secret are typed ``plugins.Secret``, and secrets are ``writeOnly`` in the schema."""
    cfg_type = connector.info.config
    marked = secret_fields(cfg_type)
    for name in cfg_type.__struct_fields__:
        if SECRET_NAME.search(name):
            assert name in marked, f"config field {name!r} looks secret; type it plugins.Secret"
    props = config_schema(cfg_type)["$defs"][cfg_type.__name__]["properties"]
    for name in marked:
        assert props[name].get("writeOnly") is True, f"secret {name!r} must be writeOnly in the schema"


def check_entry_point(connector: Any, entry_point: str | None, factory: str) -> None:
    """The ``kaquan`` entry point ``entry_point`` is installed and returns ``connector``'s id."""
    if entry_point is None:
        pytest.skip(f"no entry_point given to {factory}")
    pm = pluggy.PluginManager("kaquan")
    pm.add_hookspecs(hookspecs)
    loaded = pm.load_setuptools_entrypoints("kaquan", name=entry_point)
    assert loaded == 1, f"entry point {entry_point!r} not found in group 'kaquan'; is it installed?"
    pm.check_pending()
    ids = [c.info.id for group in pm.hook.kaquan_connectors() for c in group]
    assert connector.info.id in ids, f"{entry_point!r} does not return {connector.info.id!r}"
