"""Console test helpers: a cookie-isolated browser-like client per test, CSRF-aware form posts, users."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from html import unescape
from typing import Any

import httpx
import pytest
from litestar import Litestar

from core.db.context import tenant_context
from tests.conftest import TenantHandle, unique

_CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "the page has no CSRF field"
    return unescape(match.group(1))


def text_of(html: str) -> str:
    """The page's visible text, roughly (tags removed, entities decoded)."""
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


class Browser:
    """An httpx client with its own cookie jar that submits forms like a browser (with the CSRF field)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.http = client

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.http.get(url, **kw)

    async def submit(
        self, page_url: str, action: str, data: dict[str, Any] | list[tuple[str, str]], **kw: Any
    ) -> httpx.Response:
        """Load ``page_url`` (for its CSRF token), then POST ``data`` to ``action``."""
        page = await self.http.get(page_url)
        fields: dict[str, list[str]] = {}
        for key, value in data.items() if isinstance(data, dict) else data:
            fields.setdefault(key, []).extend(value if isinstance(value, list) else [value])
        fields["_csrf_token"] = [csrf_of(page.text)]
        return await self.http.post(action, data=fields, **kw)

    async def console_login(self, slug: str, email: str, password: str) -> httpx.Response:
        return await self.submit(
            "/console/login", "/console/login", {"tenant": slug, "email": email, "password": password}
        )

    async def operator_login(self, email: str, password: str) -> httpx.Response:
        return await self.submit("/platform/login", "/platform/login", {"email": email, "password": password})


@pytest.fixture
async def browser(app: Litestar, client: httpx.AsyncClient) -> AsyncIterator[Browser]:
    """A fresh cookie jar per test (the shared ``client`` keeps the app's lifespan running)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as c:
        yield Browser(c)


@pytest.fixture
async def new_browser(app: Litestar, client: httpx.AsyncClient) -> AsyncIterator[Callable[[], Browser]]:
    """Make more independent browsers in one test."""
    opened: list[httpx.AsyncClient] = []

    def factory() -> Browser:
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local")
        opened.append(c)
        return Browser(c)

    yield factory
    for c in opened:
        await c.aclose()


@dataclass
class ConsoleUser:
    id: uuid.UUID
    email: str
    password: str


@pytest.fixture
def make_user(kernel: Any) -> Callable[..., Awaitable[ConsoleUser]]:
    """Invite and activate a user with ``role`` in ``tenant`` through the services."""

    async def factory(tenant: TenantHandle, role: str) -> ConsoleUser:
        from tenants.users import accept_invite, create_invited_user

        email, password = f"{unique(role)}@{tenant.slug}.example.com", "user-password-1"
        with tenant_context(tenant.id):
            async with kernel.db.transaction() as db:
                user, url = await create_invited_user(kernel, db, email, role, "")
            async with kernel.db.transaction() as db:
                await accept_invite(db, url.rsplit("/", 1)[1], password)
        return ConsoleUser(user.id, email, password)

    return factory
