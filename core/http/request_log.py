"""Outermost middleware: request id, structlog context, one access-log line, request metrics.

The request id comes from ``X-Request-ID`` only when it is 1–64 printable ASCII characters; anything else
(non-UTF-8 bytes, control characters, too long) is replaced by a generated id, never an error.
The log line records what the client got: the status that was sent; the ``400`` uvicorn itself sent
for a malformed body (``kaquan serve`` runs :class:`core.http.server.KaquanHttpToolsProtocol`, which
marks the scope; logged with ``server_refused=true``); or ``499`` with ``disconnected=true`` when the
client closed the connection before an answer was sent: never a 500 the client did not receive.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import structlog
from prometheus_client import Counter, Histogram

from core.http.problems import status_for
from core.http.server import TRANSPORT_STATUS

log = structlog.get_logger("kaquan.access")

REQUESTS = Counter("kaquan_http_requests_total", "HTTP requests", ["method", "status"])
LATENCY = Histogram("kaquan_http_request_seconds", "HTTP request latency", ["method"])
CLIENT_CLOSED = 499
"""Logged when the connection closed before any answer was sent (nginx's convention)."""
_MAX_ID = 64


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's ``X-Request-ID`` when it is 1–64 printable ASCII characters, else a new one."""
    raw = next((v for k, v in headers if k == b"x-request-id"), b"")
    if 0 < len(raw) <= _MAX_ID and all(0x21 <= b <= 0x7E for b in raw):
        return raw.decode("ascii")
    return uuid.uuid4().hex


def request_log_middleware(app: Any) -> Any:
    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        rid = request_id(scope["headers"])
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid)
        started = time.perf_counter()
        status = 500
        started_response = False
        disconnected = False

        async def receive_wrapper() -> dict[str, Any]:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect" and not started_response:
                disconnected = True
            return message

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status, started_response
            if not started_response and (disconnected or TRANSPORT_STATUS in scope):
                return  # nobody is listening (or the server already answered): the log must not claim it
            if message["type"] == "http.response.start":
                started_response = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await app(scope, receive_wrapper, send_wrapper)
        except Exception as exc:  # boundary: request middleware; notes the status it will log, re-raised
            if not started_response:  # the app's outer exception handler answers; log what it sends
                status = status_for(exc)
            raise
        finally:
            refused_by_server = not started_response and TRANSPORT_STATUS in scope
            if refused_by_server:
                status = scope[TRANSPORT_STATUS]
            elif disconnected and not started_response:
                status = CLIENT_CLOSED
            elapsed = time.perf_counter() - started
            REQUESTS.labels(scope["method"], str(status)).inc()
            LATENCY.labels(scope["method"]).observe(elapsed)
            if not scope["path"].startswith(("/static", "/health", "/metrics")):
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    **({"disconnected": True} if status == CLIENT_CLOSED else {}),
                    **({"server_refused": True} if refused_by_server else {}),
                    ms=round(elapsed * 1000, 1),
                )
            structlog.contextvars.clear_contextvars()

    return middleware
