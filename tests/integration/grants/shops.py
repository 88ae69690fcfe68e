"""Test helpers for members and grants: a tenant with API clients (with and without ``codes:reveal``)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from core.db.context import tenant_context
from tenants.scopes import SCOPES
from tests.integration.inventory.stocking import Stocked, stock_product

NO_REVEAL = sorted(s for s in SCOPES if s != "codes:reveal")


@dataclass
class Shop:
    """One tenant seen through two API clients: ``headers`` (no reveal) and ``reveal_headers``."""

    id: uuid.UUID
    client: httpx.AsyncClient
    kernel: Any
    headers: dict[str, str]
    reveal_headers: dict[str, str]
    client_pk: uuid.UUID

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.headers)

    async def post(
        self,
        path: str,
        json: Any = None,
        *,
        key: str | None = "auto",
        reveal: bool = False,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        h = dict(self.reveal_headers if reveal else self.headers)
        if key == "auto":
            key = secrets.token_hex(8)
        if key is not None:
            h["Idempotency-Key"] = key
        return await self.client.post(path, json=json, headers={**h, **(headers or {})})

    async def patch(self, path: str, json: Any) -> httpx.Response:
        return await self.client.patch(path, json=json, headers=self.headers)

    async def stock(self, count: int, **kw: Any) -> Stocked:
        return await stock_product(self.kernel, self.id, count, **kw)

    async def run(self, fn: Any) -> Any:
        with tenant_context(self.id):
            async with self.kernel.db.transaction() as db:
                return await fn(db)


async def open_shop(client: httpx.AsyncClient, kernel: Any, make_tenant: Any, make_api_client: Any) -> Shop:
    tenant = await make_tenant(plan="growth")
    plain = await make_api_client(tenant, NO_REVEAL)
    revealing = await make_api_client(tenant)
    return Shop(tenant.id, client, kernel, plain.headers, revealing.headers, plain.client_pk)
