"""Connector-account fixtures: test connectors registered on the app's plugin host (a well-behaved notifier,
one that raises, one that hangs, an OAuth2 shop), a plan that allows every connector, and a local OAuth2
token endpoint (``http.server`` in a thread) with scripted answers for the authorisation and refresh flows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import msgspec
import pytest

from plugins import (
    CheckResult,
    ConnectorContext,
    ConnectorInfo,
    DeliveryResult,
    Notification,
    OAuthClientSpec,
    Secret,
    hookimpl,
)
from tests.integration.console.conftest import make_user  # noqa: F401 (a fixture the console tests use)

PLUGIN_NAME = "kaquan_test_connector_accounts"
GOOD_KEY = "good-key-7f3a9c"


class PagerConfig(msgspec.Struct, frozen=True, kw_only=True):
    api_key: Secret = ""
    sender: str = "kaquan"
    port: int = 443
    verbose: bool = False


@dataclass
class Sent:
    account_id: str
    message: Notification
    config: Any


SENT: list[Sent] = []


class TestPager:
    """A notifier for ``sms`` and ``email`` that records what it is asked to send."""

    info = ConnectorInfo(
        id="test_pager",
        kind="notifier",
        display_name="Test pager",
        display_name_zh="测试短信",
        config=PagerConfig,
        capabilities=frozenset({"sms", "email"}),
    )

    async def check(self, ctx: ConnectorContext) -> CheckResult:
        assert isinstance(ctx.config, PagerConfig)
        if ctx.config.api_key == GOOD_KEY:
            return CheckResult(ok=True, detail="reached the pager")
        return CheckResult(ok=False, detail="the pager refused the API key")

    async def send(self, ctx: ConnectorContext, message: Notification) -> DeliveryResult:
        SENT.append(Sent(ctx.account_id, message, ctx.config))
        return DeliveryResult(status="sent", provider_message_id=f"pg-{len(SENT)}")


class RaisingConfig(msgspec.Struct, frozen=True, kw_only=True):
    token: Secret = ""


class TestRaising:
    """Raises from every call, with its secret in the message (which kaquan must scrub)."""

    info = ConnectorInfo(
        id="test_raising",
        kind="notifier",
        display_name="Raising notifier",
        config=RaisingConfig,
        capabilities=frozenset({"sms"}),
    )

    async def check(self, ctx: ConnectorContext) -> CheckResult:
        assert isinstance(ctx.config, RaisingConfig)
        raise RuntimeError(f"provider exploded while using token {ctx.config.token}")

    async def send(self, ctx: ConnectorContext, message: Notification) -> DeliveryResult:
        raise RuntimeError("provider exploded")


class TestHanging:
    """Never answers (it delivers WeChat messages, which no producer sends unasked in these tests)."""

    info = ConnectorInfo(
        id="test_hanging",
        kind="notifier",
        display_name="Hanging notifier",
        config=RaisingConfig,
        capabilities=frozenset({"wechat"}),
    )

    async def check(self, ctx: ConnectorContext) -> CheckResult:
        await asyncio.sleep(3600)
        return CheckResult(ok=True)

    async def send(self, ctx: ConnectorContext, message: Notification) -> DeliveryResult:
        await asyncio.sleep(3600)
        return DeliveryResult(status="sent")


class ShopConfig(msgspec.Struct, frozen=True, kw_only=True):
    shop_id: str
    app_key: str = "app-1"
    app_secret: Secret = ""
    base_url: str = "http://127.0.0.1:9"


class TestShop:
    """A sales channel authorised by the shop owner (OAuth2 authorisation code)."""

    info = ConnectorInfo(
        id="test_shop",
        kind="sales_channel",
        display_name="Test shop",
        display_name_zh="测试店铺",
        config=ShopConfig,
        capabilities=frozenset({"oauth"}),
    )

    def oauth_client(self, config: Any) -> OAuthClientSpec:
        assert isinstance(config, ShopConfig)
        return OAuthClientSpec(
            authorize_url=f"{config.base_url}/authorize",
            token_url=f"{config.base_url}/token",
            client_id=config.app_key,
            client_secret=config.app_secret,
            scope="items orders",
        )

    async def check(self, ctx: ConnectorContext) -> CheckResult:
        if not ctx.access_token:
            return CheckResult(ok=False, detail="not authorised")
        return CheckResult(ok=True, detail=f"shop reached with a token of {len(ctx.access_token)} characters")


class TestConnectorsPlugin:
    @hookimpl
    def kaquan_connectors(self) -> list[Any]:
        return [TestPager(), TestRaising(), TestHanging(), TestShop()]


@pytest.fixture
def test_connectors(app: Any) -> Iterator[Any]:
    """The test connectors on the app's plugin host (which the job runtime shares), for one test only."""
    host = app.state.jobs.plugins
    host.register(TestConnectorsPlugin(), name=PLUGIN_NAME)
    SENT.clear()
    try:
        yield host
    finally:
        plugin = host.pm.get_plugin(PLUGIN_NAME)
        if plugin is not None:
            host.pm.unregister(plugin)
        host._by_plugin = host._connectors = None  # the host caches its connectors until plugins change


@pytest.fixture(scope="session")
async def all_connectors_plan(client: httpx.AsyncClient, operator: Any) -> str:
    code = f"all{secrets.token_hex(3)}"
    r = await client.post(
        "/api/platform/v1/plans",
        json={"code": code, "name": "Everything", "allowed_connectors": ["*"], "max_api_clients": 10},
        headers=operator.headers,
    )
    assert r.status_code == 201, r.text
    return code


@pytest.fixture(scope="session")
async def no_connectors_plan(client: httpx.AsyncClient, operator: Any) -> str:
    """A plan that allows no connector (the default plans allow them all)."""
    code = f"none{secrets.token_hex(3)}"
    r = await client.post(
        "/api/platform/v1/plans",
        json={"code": code, "name": "Closed", "allowed_connectors": [], "max_api_clients": 10},
        headers=operator.headers,
    )
    assert r.status_code == 201, r.text
    return code


@dataclass
class Accounts:
    """A tenant on a plan that allows every connector, with an API client holding the connector scopes."""

    tenant: Any
    creds: Any
    client: httpx.AsyncClient
    kernel: Any
    app: Any

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.creds.headers)

    async def connect(self, connector_id: str, name: str | None = None, **config: Any) -> dict[str, Any]:
        body = {"connector_id": connector_id, "name": name or f"{connector_id}-{uuid.uuid4().hex[:6]}", "config": config}
        r = await self.client.post("/api/v1/connector-accounts", json=body, headers=self.headers)
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.post(path, headers=self.headers, **kw)

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.get(path, headers=self.headers, **kw)


@pytest.fixture
async def accounts(
    client: httpx.AsyncClient,
    kernel: Any,
    app: Any,
    make_tenant: Any,
    make_api_client: Any,
    all_connectors_plan: str,
    test_connectors: Any,
) -> Accounts:
    tenant = await make_tenant(plan=all_connectors_plan)
    creds = await make_api_client(tenant, ["connectors:read", "connectors:manage", "events:read"])
    return Accounts(tenant, creds, client, kernel, app)


# --- a local OAuth2 token endpoint ---------------------------------------------------------------------------


@dataclass
class TokenServer:
    """``POST /token``: the authorisation-code and refresh grants, answered as scripted."""

    base_url: str = ""
    good_code: str = "code-ok"
    refresh_mode: str = "ok"  # ok | refuse | down
    issued: int = 0
    requests: list[dict[str, list[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, form: dict[str, list[str]], auth: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests.append({**form, "_auth": [auth]})
            grant = form.get("grant_type", [""])[0]
            if grant == "authorization_code":
                if form.get("code", [""])[0] != self.good_code:
                    return 400, {"error": "invalid_grant", "error_description": "bad code"}
            elif grant == "refresh_token":
                if self.refresh_mode == "refuse":
                    return 400, {"error": "invalid_grant", "error_description": "refresh token revoked"}
                if self.refresh_mode == "down":
                    return 503, {"error": "temporarily_unavailable"}
            else:
                return 400, {"error": "unsupported_grant_type"}
            self.issued += 1
            return 200, {
                "access_token": f"at-secret-{self.issued}-{secrets.token_hex(6)}",
                "refresh_token": f"rt-secret-{self.issued}-{secrets.token_hex(6)}",
                "expires_in": 3600,
                "token_type": "Bearer",
            }


def _token_handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            """``/authorize``: the shop owner consents at once; back to the redirect URI with a code."""
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            if parts.path != "/authorize" or "redirect_uri" not in query:
                self.send_response(404)
                self.end_headers()
                return
            back = f"{query['redirect_uri'][0]}?{urlencode({'code': server.good_code, 'state': query['state'][0]})}"
            self.send_response(302)
            self.send_header("Location", back)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            status, body = server.answer(form, self.headers.get("Authorization", ""))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextlib.contextmanager
def serve_tokens() -> Iterator[TokenServer]:
    """A :class:`TokenServer` on a free 127.0.0.1 port, in a thread."""
    ts = TokenServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _token_handler(ts))
    ts.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield ts
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    with serve_tokens() as ts:
        yield ts
