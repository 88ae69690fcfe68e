from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from litestar import Litestar

from tests.integration.claims.helpers import Phone, Shop


async def _shop(client: httpx.AsyncClient, kernel: Any, make_tenant: Any, make_api_client: Any) -> Shop:
    tenant = await make_tenant(plan="growth")
    creds = await make_api_client(tenant)
    return Shop(tenant.id, kernel, client, creds.headers)


@pytest.fixture
async def shop(client: httpx.AsyncClient, kernel: Any, make_tenant: Any, make_api_client: Any) -> Shop:
    return await _shop(client, kernel, make_tenant, make_api_client)


@pytest.fixture
async def other_shop(client: httpx.AsyncClient, kernel: Any, make_tenant: Any, make_api_client: Any) -> Shop:
    return await _shop(client, kernel, make_tenant, make_api_client)


@pytest.fixture
async def phones(app: Litestar, client: httpx.AsyncClient) -> AsyncIterator[Callable[..., Phone]]:
    """Make independent phone browsers (own cookies; optionally their IP and headers) in one test."""
    opened: list[Phone] = []

    def factory(ip: str = "127.0.0.1", headers: dict[str, str] | None = None) -> Phone:
        phone = Phone(app, ip, headers)
        opened.append(phone)
        return phone

    yield factory
    for p in opened:
        await p.close()
