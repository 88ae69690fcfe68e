"""Fixtures for bulk-grant tests: a tenant with an API client and stocked products under known SKUs."""

from __future__ import annotations

import asyncio
import contextlib
import io
import secrets
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import openpyxl
import pytest
from sqlalchemy import func, select

from core.catalog.models import Product
from core.db.context import tenant_context
from tests.integration.console.conftest import browser, make_user, new_browser
from tests.integration.inventory.stocking import stock_product

__all__ = ["browser", "make_user", "new_browser"]


@dataclass
class Shop:
    tenant: Any
    creds: Any


def csv_bytes(header: list[str], rows: list[tuple[Any, ...]], encoding: str = "utf-8") -> bytes:
    lines = [",".join(header)] + [",".join("" if v is None else str(v) for v in r) for r in rows]
    return ("\r\n".join(lines) + "\r\n").encode(encoding)


def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    wb = openpyxl.Workbook()
    for row in rows:
        wb.active.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def phones(n: int) -> list[str]:
    """Distinct random mainland mobile numbers (a fresh set per test keeps members apart)."""
    return [f"13{secrets.randbelow(10)}{secrets.randbelow(10**8):08d}" for _ in range(n)]


async def new_product(
    kernel: Any, tenant_id: uuid.UUID, stock: int, *, status: str = "active"
) -> tuple[str, uuid.UUID]:
    """A code product under a fresh SKU with ``stock`` codes; returns (sku, product id)."""
    sku = f"WF-{secrets.token_hex(3).upper()}"
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            product = Product(
                sku=sku,
                kind="code",
                code_format="number",
                name_zh="员工福利券",
                name_en="Staff voucher",
                status=status,
            )
            db.add(product)
            await db.flush()
            pid = product.id
    if stock:
        await stock_product(kernel, tenant_id, stock, product_id=pid, with_pin=False)
    return sku, pid


async def count(kernel: Any, tenant_id: uuid.UUID, model: Any, *where: Any) -> int:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return int(await db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def upload(
    client: httpx.AsyncClient, shop: Shop, data: bytes, filename: str, **fields: str
) -> httpx.Response:
    return await client.post(
        "/api/v1/bulk-grants",
        headers=shop.creds.headers,
        files={"file": (filename, data, "application/octet-stream")},
        data=fields,
    )


@contextlib.asynccontextmanager
async def worker_for(settings: Any) -> AsyncIterator[None]:
    """Service mode: a `kaquan worker` thread consumes what the relay sends; embedded mode has one in-process."""
    if not settings.redis_url:
        yield
        return
    from core.jobs.worker import run_worker

    stop = threading.Event()
    thread = threading.Thread(
        target=run_worker, args=(settings,), kwargs={"threads": 2, "stop": stop}, daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 60)


async def wait_job(client: httpx.AsyncClient, shop: Shop, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(1200):  # a condition wait (up to two minutes), not a timing assertion
        r = await client.get(f"/api/v1/jobs/{job_id}", headers=shop.creds.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] in ("succeeded", "failed"):
            break
        await asyncio.sleep(0.1)
    return body


async def confirm_and_wait(
    client: httpx.AsyncClient, shop: Shop, settings: Any, bulk_id: str
) -> dict[str, Any]:
    async with worker_for(settings):
        r = await client.post(f"/api/v1/bulk-grants/{bulk_id}/confirm", headers=shop.creds.headers)
        assert r.status_code == 202, r.text
        job = await wait_job(client, shop, r.json()["job_id"])
    assert job["status"] == "succeeded", job
    return job


@pytest.fixture
async def shop(make_tenant, make_api_client) -> Shop:
    tenant = await make_tenant(plan="growth")
    return Shop(tenant, await make_api_client(tenant))
