"""Webhook fixtures: a real local HTTP receiver (``http.server`` in a thread) with scripted answers, and the
app's own job runtime doing the work (embedded: its in-process worker; service mode: a ``kaquan worker`` in a
thread on the same Redis namespace), so events go emit → outbox → relay → fan-out → delivery → POST.

Private targets are allowed here (the receiver listens on 127.0.0.1): embedded mode allows them, and in
service mode the fixture turns ``webhook_allow_private`` on for the app and the worker, as a deployment
that tests against local receivers would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy import select

from core.db.base import utcnow
from core.db.context import tenant_context
from core.events.services import emit
from core.jobs.models import OutboxMessage
from core.jobs.relay import relay_once
from core.webhooks.models import WebhookDelivery
from tests.integration.console.conftest import make_user  # noqa: F401 (a fixture the console tests use)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """Answers POSTs with the next scripted ``(status, body)`` of the path (then ``default``)."""

    base_url: str = ""
    default: tuple[int, str] = (200, "ok")
    scripts: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def script(self, path: str, *answers: tuple[int, str]) -> None:
        with self.lock:
            self.scripts[path] = list(answers)

    def answer(self, path: str) -> tuple[int, str]:
        with self.lock:
            queue = self.scripts.get(path)
            return queue.pop(0) if queue else self.default

    def record(self, item: Received) -> None:
        with self.lock:
            self.received.append(item)

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            status, text = receiver.answer(self.path)
            receiver.record(
                Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, status)
            )
            payload = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recv = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recv))
    recv.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recv
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
async def webhook_jobs(kernel: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """Private targets allowed, and a worker consuming the app's queues (service mode)."""
    local = msgspec.structs.replace(settings, webhook_allow_private=True)
    monkeypatch.setattr(kernel, "settings", local)
    if not settings.redis_url:
        yield local
        return
    from core.jobs.worker import run_worker

    stop = threading.Event()
    thread = threading.Thread(
        target=run_worker, args=(local,), kwargs={"threads": 2, "stop": stop}, daemon=True
    )
    thread.start()
    try:
        yield local
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 60)


@dataclass
class Hooks:
    """A tenant with an API client holding ``webhooks:manage`` (and the helpers the tests share)."""

    tenant: Any
    creds: Any
    client: httpx.AsyncClient
    kernel: Any
    app: Any

    @property
    def headers(self) -> dict[str, str]:
        return self.creds.headers

    async def subscribe(self, url: str, events: list[str] | None = None, **extra: Any) -> dict[str, Any]:
        r = await self.client.post(
            "/api/v1/webhooks", headers=self.headers, json={"url": url, "events": events or ["*"], **extra}
        )
        assert r.status_code == 201, r.text
        return r.json()

    async def emit(self, type_: str = "stock.low", data: dict[str, Any] | None = None) -> uuid.UUID:
        with tenant_context(self.tenant.id):
            async with self.kernel.db.transaction() as db:
                event = emit(db, type_, "product-1", data or {"product_id": "product-1", "available": 3})
        return event.id

    async def deliveries(self, subscription_id: str, **params: Any) -> list[dict[str, Any]]:
        r = await self.client.get(
            f"/api/v1/webhooks/{subscription_id}/deliveries", headers=self.headers, params=params
        )
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    async def wait_for(
        self, subscription_id: str, done: Callable[[list[dict[str, Any]]], bool], within: float = 60.0
    ) -> list[dict[str, Any]]:
        """Poll the delivery log until ``done(items)`` (a condition wait, not a timing assertion)."""
        items: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            items = await self.deliveries(subscription_id)
            if done(items):
                return items
            await asyncio.sleep(0.1)
        raise AssertionError(f"deliveries never reached the expected state: {items}")

    async def fast_forward(self, minutes: int = 10) -> None:
        """Time passes: relay this tenant's outbox rows due within ``minutes`` (e.g. a retry after backoff)."""
        await relay_once(
            self.kernel.db,
            self.app.state.jobs.broker,
            now=utcnow() + dt.timedelta(minutes=minutes),
            tenant_ids=[self.tenant.id],
        )

    async def outbox(self, *keys: str) -> list[OutboxMessage]:
        with tenant_context(self.tenant.id):
            async with self.kernel.db.transaction() as db:
                q = select(OutboxMessage).where(OutboxMessage.business_key.in_(keys))
                return list((await db.execute(q)).scalars())

    async def wait_outbox_done(self, *keys: str, within: float = 60.0) -> None:
        deadline = asyncio.get_running_loop().time() + within
        rows: list[OutboxMessage] = []
        while asyncio.get_running_loop().time() < deadline:
            rows = await self.outbox(*keys)
            if len(rows) == len(keys) and all(r.status == "done" for r in rows):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"outbox rows not done: {[(r.business_key, r.status) for r in rows]}")

    async def delivery_row(self, delivery_id: str) -> WebhookDelivery:
        with tenant_context(self.tenant.id):
            async with self.kernel.db.transaction() as db:
                q = select(WebhookDelivery).where(WebhookDelivery.id == uuid.UUID(delivery_id))
                return (await db.execute(q)).scalar_one()


@pytest.fixture
async def hooks(
    client: httpx.AsyncClient, kernel: Any, app: Any, make_tenant: Any, make_api_client: Any
) -> Hooks:
    tenant = await make_tenant()
    creds = await make_api_client(tenant, ["webhooks:manage", "events:read"])
    return Hooks(tenant, creds, client, kernel, app)
