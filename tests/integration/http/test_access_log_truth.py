"""The access log records what the client got (issue 9, item 5), against a real uvicorn on 127.0.0.1:
a chunked body uvicorn itself refuses is logged with uvicorn's 400 (``kaquan serve``'s protocol marks
it), a client that goes away mid-body ``499 disconnected``; never a 500 the client did not receive."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator

import pytest
import structlog
import uvicorn

from core.http.server import KaquanHttpToolsProtocol
from core.logging import configure_logging


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def served(app, client) -> AsyncIterator[int]:
    """The test app served by uvicorn (lifespan already running through ``client``) on a free port."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", http=KaquanHttpToolsProtocol
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture
def access_log(settings) -> AsyncIterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging("INFO", json=True)
    processors = structlog.get_config()["processors"]
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(buffer), processors=processors)
    try:
        yield buffer
    finally:
        configure_logging(settings.log_level, settings.log_json)


async def _exchange(port: int, request: bytes, *, close_after_send: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    if close_after_send:
        writer.close()
        return b""
    answer = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    return answer


async def _logged(buffer: io.StringIO, path: str) -> list[dict]:
    for _ in range(100):
        lines = [json.loads(x) for x in buffer.getvalue().splitlines() if x.startswith("{")]
        found = [e for e in lines if e.get("event") == "request" and e.get("path") == path]
        if found:
            return found
        await asyncio.sleep(0.05)
    return []


async def test_a_chunked_body_uvicorn_refuses_is_logged_with_uvicorns_400(
    served, access_log, make_tenant, make_api_client
):
    tenant = await make_tenant()
    creds = await make_api_client(tenant)
    head = (
        f"POST /api/v1/members HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {creds.token}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    answer = await _exchange(served, head + b"5\r\n{\"nam\r\nzz-not-a-chunk-size\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer  # uvicorn's own answer
    entries = await _logged(access_log, "/api/v1/members")
    assert entries, access_log.getvalue()
    assert entries[-1]["status"] == 400 and entries[-1]["server_refused"] is True  # what the client got
    assert "disconnected" not in entries[-1]
    assert all(e["status"] != 500 for e in entries)
    assert "unhandled_error" not in access_log.getvalue()


async def test_a_client_gone_mid_body_is_logged_as_disconnected(served, access_log, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant)
    head = (
        f"POST /api/v1/members HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {creds.token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"name\": "
    ).encode()
    await _exchange(served, head, close_after_send=True)
    entries = await _logged(access_log, "/api/v1/members")
    assert entries and entries[-1]["status"] == 499, access_log.getvalue()


async def test_a_normal_answer_is_still_logged_with_its_status(served, access_log):
    answer = await _exchange(
        served, b"GET /api/v1/products HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 401")
    entries = await _logged(access_log, "/api/v1/products")
    assert entries and entries[-1]["status"] == 401 and "disconnected" not in entries[-1]


async def test_a_request_uvicorn_refused_before_the_app_answered_is_logged_with_the_400(served, access_log):
    """The bad chunk arrives with the headers: uvicorn answers 400 at once, the app (no token: 401) is
    too late and nobody hears it, so the log must say 400, not 401."""
    head = (
        b"POST /api/v1/members HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"nam\r\nzz\r\n\r\n"
    )
    answer = await _exchange(served, head)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    entries = await _logged(access_log, "/api/v1/members")
    assert entries and entries[-1]["status"] == 400 and entries[-1]["server_refused"] is True
