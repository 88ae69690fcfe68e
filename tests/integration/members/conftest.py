from __future__ import annotations

import pytest

from tests.integration.grants.shops import Shop, open_shop


@pytest.fixture
async def shop(client, kernel, make_tenant, make_api_client) -> Shop:
    return await open_shop(client, kernel, make_tenant, make_api_client)


@pytest.fixture
async def other_shop(client, kernel, make_tenant, make_api_client) -> Shop:
    return await open_shop(client, kernel, make_tenant, make_api_client)
