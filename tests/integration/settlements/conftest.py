from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.channel_orders.fake_channel import connect_account


@dataclass
class Seller:
    """A tenant with an API client (every scope) and one sales-channel account."""

    tenant_id: uuid.UUID
    account_id: uuid.UUID
    headers: dict[str, str]
    slug: str
    email: str
    password: str


@pytest.fixture
async def seller(client: Any, kernel: Any, make_tenant: Any, make_api_client: Any) -> Seller:
    tenant = await make_tenant(plan="growth")
    creds = await make_api_client(tenant)
    shop = await connect_account(kernel, tenant.id, name="抖音小店")
    return Seller(tenant.id, shop.account_id, creds.headers, tenant.slug, tenant.owner_email, tenant.owner_password)
