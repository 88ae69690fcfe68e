"""Browser tests: the app served by uvicorn in a background thread, driven by Debian's Chromium.

Playwright's sync API runs outside pytest-asyncio's loop, so browser tests are plain sync functions.
Data they need is made through the HTTP API or the console itself; only the platform operator (made by
the CLI in real life) is created through the service, in the server's own event loop.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
import pytest
import uvicorn
from litestar import Litestar
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from core.app import create_app
from core.settings import Settings
from tenants.models import Tenant
from tests.conftest import REQUIRE, unique

T = TypeVar("T")

CHROMIUM = os.environ.get("KAQUAN_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--headless=new",
]
SCREENSHOTS = Path(os.environ.get("KAQUAN_TEST_SCREENSHOTS", "/tmp"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    app: Litestar
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run ``coro`` in the server's event loop (where the app's database engine lives)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@pytest.fixture(scope="module")
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """``create_app`` with the session's test settings, served on a free 127.0.0.1 port.

    Module-scoped: the server (and its outbox relay and worker) stops before other test modules run.
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(msgspec.structs.replace(settings, base_url=url))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False)
    )
    loops: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        loops.append(asyncio.get_running_loop())
        await server.serve()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name="kaquan-e2e-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the test server did not start", pytrace=False)
        time.sleep(0.05)
    try:
        yield LiveServer(url, app, loops[0])
    finally:
        server.should_exit = True
        thread.join(30)


@dataclass
class OperatorAccount:
    email: str
    password: str


@pytest.fixture(scope="module")
def operator_account(live_server: LiveServer) -> OperatorAccount:
    """A platform operator (the CLI's job in production) and the default plans."""
    from tenants.onboarding import ensure_default_plans
    from tenants.operators import create_operator

    email, password = f"{unique('op')}@example.com", "operator-password-1"

    async def make() -> None:
        async with live_server.app.state.kernel.db.transaction() as db:
            await ensure_default_plans(db)
            await create_operator(db, email, password)

    for attempt in range(10):
        try:
            live_server.run(make())
            break
        except OperationalError as exc:  # SQLite: another connection wrote since this one's read began
            if "locked" not in str(exc) or attempt == 9:
                raise
            time.sleep(0.2 * (attempt + 1))
    return OperatorAccount(email, password)


def onboard_via_api(live_server: LiveServer, operator: OperatorAccount, slug: str) -> str:
    """Onboard a tenant through the operator API; returns the owner's invite URL."""
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        r = http.post("/api/platform/v1/login", json={"email": operator.email, "password": operator.password})
        r.raise_for_status()
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        body = {"name": f"Shop {slug}", "slug": slug, "owner_email": f"owner@{slug}.example.com"}
        r = http.post("/api/platform/v1/tenants", json=body, headers=headers)
        r.raise_for_status()
        return str(r.json()["owner_invite_url"])


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Headless Chromium from Debian (never a downloaded browser). Missing → skip, or fail in CI."""
    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM} (set KAQUAN_TEST_CHROMIUM or apt-get install chromium)"
        if REQUIRE:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        if REQUIRE:
            pytest.fail(f"the playwright package is missing: {exc}", pytrace=False)
        pytest.skip(f"the playwright package is missing: {exc}")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any, live_server: LiveServer) -> Iterator[Any]:
    """A fresh browser context (own cookies) per test: desktop-sized, a Chinese-speaking user."""
    context = chromium.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 860}, locale="zh-CN"
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        yield page
    finally:
        context.close()


def tenant_id_of(live_server: LiveServer, slug: str) -> uuid.UUID:
    """The id of the tenant with ``slug`` (for seeding data behind the browser's back)."""

    async def find() -> uuid.UUID:
        async with live_server.app.state.kernel.db.transaction() as db:
            return (await db.execute(select(Tenant.id).where(Tenant.slug == slug))).scalar_one()

    return live_server.run(find())
