"""Grant delivery through notifier connectors: e-mail to a real local SMTP server (aiosmtpd), SMS to a
local HTTP gateway; retries, final failure, voided grants, and the outbox payload."""

from __future__ import annotations

import datetime as dt
import email
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from core.db.context import tenant_context
from core.events.models import Event
from core.grants.delivery import MAX_RETRIES, GrantDeliveryFailed, deliver_grant
from core.grants.models import Grant
from core.grants.schemas import GrantRequest
from core.grants.services import create_grant, void_grant
from core.jobs.context import JobEnv, MessageInfo, reset_job_context, set_job_context
from core.jobs.models import OutboxMessage
from core.plugin_host import load_plugins

FAR = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox("127.0.0.1", _free_port())
    controller = Controller(box, hostname=box.host, port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@dataclass
class Gateway:
    url: str
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    answer: int = 200


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    port = _free_port()
    gw = Gateway(f"http://127.0.0.1:{port}/send")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length", 0))
            gw.requests.append((dict(self.headers), json.loads(self.rfile.read(size))))
            out = json.dumps({"id": f"gw-{len(gw.requests)}"}).encode()
            self.send_response(gw.answer)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gw
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def run_job(settings, kernel, mailbox, gateway):
    """Run ``deliver_grant`` as the worker would, with SMTP and the SMS gateway pointing at local servers."""
    configured = msgspec.structs.replace(
        settings,
        smtp_host=mailbox.host,
        smtp_port=mailbox.port,
        smtp_sender="gifts@shop.example.com",
        sms_gateway_url=gateway.url,
        sms_gateway_key="gw-secret-key",
    )
    env = JobEnv(configured, kernel.keys, load_plugins())

    async def run(tenant_id: uuid.UUID, grant_id: uuid.UUID, retries: int = 0) -> None:
        key = f"deliver_grant:{grant_id}"
        info = MessageInfo("m-" + uuid.uuid4().hex, "deliver_grant", tenant_id, key, None, retries)
        tokens = set_job_context(env, info)
        try:
            with tenant_context(tenant_id):
                await deliver_grant(str(grant_id))
        finally:
            reset_job_context(tokens)

    yield run


async def _grant(shop, product_id, **fields) -> Grant:
    """Create a grant through the service with its delivery held back from the app's own relay."""

    async def go(db):
        grant = await create_grant(
            db, shop.kernel, GrantRequest(product_id=product_id, **fields), source="api"
        )
        await db.flush()
        await db.execute(
            update(OutboxMessage)
            .where(OutboxMessage.business_key == f"deliver_grant:{grant.id}")
            .values(available_at=FAR)
        )
        return grant

    return await shop.run(go)


async def _state(shop, grant_id):
    async def go(db):
        g = (await db.execute(select(Grant).where(Grant.id == grant_id))).scalar_one()
        events = list(
            (await db.execute(select(Event.type).where(Event.object_id == str(grant_id)))).scalars()
        )
        return g, events

    return await shop.run(go)


async def test_email_delivery_over_real_smtp(shop, mailbox, run_job):
    s = await shop.stock(2, usage_rules="在门店出示券码即可使用")
    grant = await _grant(shop, s.product_id, quantity=2, email="winner@example.com", name="李雷")
    assert grant.channel == "email" and grant.contact_masked == "w***@example.com"
    before = len(mailbox.messages)
    await run_job(shop.id, grant.id)
    assert len(mailbox.messages) == before + 1
    envelope = mailbox.messages[-1]
    assert envelope.rcpt_tos == ["winner@example.com"]
    mail = email.message_from_bytes(envelope.content, policy=policy.default)
    text = mail.get_content()
    assert sum(n in text for n in s.numbers) == 2 and "在门店出示券码即可使用" in text and "李雷" in text
    assert "测试券" in str(mail["Subject"])
    g, events = await _state(shop, grant.id)
    assert g.status == "delivered" and g.delivered_at is not None
    assert "grant.delivered" in events
    await run_job(shop.id, grant.id)  # a redelivered message sends nothing twice
    assert len(mailbox.messages) == before + 1


async def test_sms_delivery_through_the_http_gateway(shop, gateway, run_job):
    s = await shop.stock(1)
    grant = await _grant(shop, s.product_id, phone="13812345678")
    assert grant.channel == "sms"
    gateway.answer = 200
    before = len(gateway.requests)
    await run_job(shop.id, grant.id)
    headers, payload = gateway.requests[before]
    assert headers["X-Api-Key"] == "gw-secret-key"
    assert payload["to"] == "+8613812345678" and s.numbers[0] in payload["text"]
    assert payload["reference"] == f"deliver_grant:{grant.id}"
    g, events = await _state(shop, grant.id)
    assert g.status == "delivered" and "grant.delivered" in events


async def test_gateway_failure_retries_then_fails_for_good(shop, gateway, run_job):
    s = await shop.stock(1)
    grant = await _grant(shop, s.product_id, phone="13812345679")
    gateway.answer = 503
    with pytest.raises(GrantDeliveryFailed):
        await run_job(shop.id, grant.id, retries=0)
    g, _ = await _state(shop, grant.id)
    assert g.status == "created"
    await run_job(shop.id, grant.id, retries=MAX_RETRIES)
    g, events = await _state(shop, grant.id)
    assert g.status == "delivery_failed" and "HTTP 503" in (g.delivery_detail or "")
    assert "grant.delivery_failed" in events
    # an undelivered grant can be voided
    voided = await shop.run(lambda db: void_grant(db, shop.kernel, grant.id, "phone unreachable"))
    assert voided.status == "voided"


async def test_rejected_recipient_fails_at_once(shop, gateway, run_job):
    s = await shop.stock(1)
    grant = await _grant(shop, s.product_id, phone="13812345670")
    gateway.answer = 400
    await run_job(shop.id, grant.id, retries=0)
    g, events = await _state(shop, grant.id)
    assert g.status == "delivery_failed" and "grant.delivery_failed" in events
    gateway.answer = 200


async def test_voided_grant_is_not_sent(shop, gateway, run_job):
    s = await shop.stock(1)
    grant = await _grant(shop, s.product_id, phone="13812345671")
    await shop.run(lambda db: void_grant(db, shop.kernel, grant.id, "cancelled"))
    before = len(gateway.requests)
    await run_job(shop.id, grant.id)
    assert len(gateway.requests) == before
    g, events = await _state(shop, grant.id)
    assert g.status == "voided" and "grant.delivered" not in events


async def test_a_code_voided_before_delivery_is_not_sent(shop, gateway, run_job):
    s = await shop.stock(2)
    grant = await _grant(shop, s.product_id, quantity=2, phone="13812345672")
    codes = (await shop.get(f"/api/v1/grants/{grant.id}")).json()["codes"]
    recalled, kept = (s.numbers[s.code_ids.index(uuid.UUID(c["code_id"]))] for c in codes)
    r = await shop.post(
        "/api/v1/codes/void", {"code_ids": [codes[0]["code_id"]], "reason": "供应商召回"}, key=None
    )
    assert r.status_code == 200, r.text
    gateway.answer = 200
    before = len(gateway.requests)
    await run_job(shop.id, grant.id)
    _, payload = gateway.requests[before]
    assert kept in payload["text"] and recalled not in payload["text"]
    g, _ = await _state(shop, grant.id)
    assert g.status == "delivered"
