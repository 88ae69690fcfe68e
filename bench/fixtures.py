"""Set-up shared by the comparison benchmarks: tenants, API clients, products and stock.

Tenants, plans, API clients and products are made through kaquan's service layer (as the other benchmarks
do); stock is written with SQL as the database owner, which is much faster than sealing each code in
Python when a run needs a hundred thousand: the grant path never opens a code, so grant stock is random
bytes in the code columns. Codes that are redeemed are sealed for real (:func:`sealed_cards`), under the
tenant's data key, because the redemption checks the PIN by opening the code.

Each contender of a comparison gets a tenant of its own, so nothing one does (an audit sealer, a member
created, a stock count) falls on another's rows.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from http_overhead import running
from litestar import Litestar
from sqlalchemy import select
from uuid_utils.compat import uuid7

from core.catalog.models import Product
from core.crypto.envelope import TenantCipher
from core.crypto.models import TenantKey
from core.db.context import set_tenant, tenant_context
from core.db.ids import readable_ref
from core.inventory.models import Batch
from core.inventory.vault import seal
from tenants import onboarding
from tenants.clients import create_client
from tenants.schemas import PlanCreate, TenantCreate

PLAN = "bench"


@dataclass
class BenchTenant:
    """A tenant with one API client and one number + PIN product, and what a server needs to act for it."""

    slug: str
    tenant_id: uuid.UUID
    client_pk: uuid.UUID
    product_id: uuid.UUID
    batch_id: uuid.UUID
    data_key: bytes
    token: str = ""  # a kaquan bearer token (filled in for the tenant kaquan serves)
    client_id: str = ""
    secret: str = ""
    cards: list[tuple[str, str]] = field(default_factory=list)  # sealed, issued, not yet handed to a run


async def ensure_plan(app: Litestar) -> None:
    """The default plans and a ``bench`` plan with limits no run reaches (once per database)."""
    kernel = app.state.kernel
    async with kernel.db.transaction() as s:
        await onboarding.ensure_default_plans(s)
        await onboarding.create_plan(
            s,
            PlanCreate(
                code=PLAN,
                name="Bench",
                requests_per_minute=1_000_000_000,
                max_api_clients=10,
                max_stored_codes=100_000_000,
            ),
        )


async def onboard(app: Litestar, slug: str, scopes: list[str]) -> BenchTenant:
    """A tenant on the bench plan, an API client with ``scopes`` and a number + PIN product (face ¥20)."""
    kernel = app.state.kernel
    async with kernel.db.transaction() as s:
        created = await onboarding.create_tenant(
            kernel,
            s,
            TenantCreate(name=f"Bench {slug}", slug=slug, owner_email=f"owner@{slug}.example.com", plan=PLAN),
        )
    set_tenant(None)
    tenant_id = created.tenant.id
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as s:
            client, secret = await create_client(s, "bench", scopes)
            product = Product(
                sku=f"BENCH-{slug.upper()}",
                kind="code",
                code_format="number_pin",
                name_zh="基准券",
                name_en="Bench voucher",
                face_value=2000,
            )
            s.add(product)
            await s.flush()
            batch = Batch(ref=readable_ref("B"), product_id=product.id, supplier="bench", unit_cost=100)
            s.add(batch)
            await s.flush()
            key = (
                (await s.execute(select(TenantKey).where(TenantKey.active.is_(True)).order_by(TenantKey.id)))
                .scalars()
                .first()
            )
            assert key is not None  # onboarding made it
            data_key = kernel.keys.keyring.unwrap(key.wrapped_key, key.master_key_id, tenant_id)
    return BenchTenant(
        slug, tenant_id, client.id, product.id, batch.id, data_key, client_id=client.client_id, secret=secret
    )


async def fetch_token(app: Litestar, tenant: BenchTenant) -> str:
    """A bearer token of the tenant's API client from ``POST /oauth/token`` (in-process)."""
    async with running(app) as c:
        r = await c.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(tenant.client_id, tenant.secret),
        )
        r.raise_for_status()
        tenant.token = str(r.json()["access_token"])
        return tenant.token


def _expiries(n: int, now: dt.datetime) -> list[dt.datetime]:
    return [now + dt.timedelta(days=30 + i % 300, seconds=i % 86_400) for i in range(n)]


_INSERT_CODES = """
INSERT INTO codes (tenant_id, id, product_id, batch_id, digest, secret, last4, has_pin, state, expires_at,
                   state_changed_at, created_at)
SELECT $1, u.id, $2, $3, u.digest, u.secret, u.last4, true, $4, u.expires_at, $5, $5
FROM unnest($6::uuid[], $7::text[], $8::bytea[], $9::text[], $10::timestamptz[])
  AS u(id, digest, secret, last4, expires_at)
"""


async def _insert_codes(conn: Any, t: BenchTenant, state: str, rows: list[tuple[Any, ...]]) -> None:
    now = dt.datetime.now(dt.UTC)
    for start in range(0, len(rows), 10_000):
        part = rows[start : start + 10_000]
        columns = list(zip(*part, strict=True))
        await conn.execute(
            _INSERT_CODES, t.tenant_id, t.product_id, t.batch_id, state, now, *[list(c) for c in columns]
        )


async def stock_codes(owner_dsn: str, t: BenchTenant, n: int) -> None:
    """``n`` available codes of the tenant's product (random digests and secrets), then ``ANALYZE codes``."""
    now = dt.datetime.now(dt.UTC)
    rows = [
        (uuid7(), secrets.token_hex(32), os.urandom(48), f"{i % 10_000:04d}", exp)
        for i, exp in enumerate(_expiries(n, now))
    ]
    conn = await asyncpg.connect(owner_dsn)
    try:
        await _insert_codes(conn, t, "available", rows)
        await conn.execute("ANALYZE codes")
    finally:
        await conn.close()


async def available(owner_dsn: str, t: BenchTenant) -> int:
    conn = await asyncpg.connect(owner_dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM codes WHERE tenant_id = $1 AND product_id = $2 AND state = 'available'",
                t.tenant_id,
                t.product_id,
            )
        )
    finally:
        await conn.close()


async def top_up(owner_dsn: str, t: BenchTenant, wanted: int) -> int:
    """Stock the tenant's product up to ``wanted`` available codes; returns how many were added."""
    missing = wanted - await available(owner_dsn, t)
    if missing > 0:
        await stock_codes(owner_dsn, t, missing)
    return max(missing, 0)


async def sealed_cards(owner_dsn: str, t: BenchTenant, n: int) -> list[tuple[str, str]]:
    """``n`` number + PIN codes sealed under the tenant's data key, stored ``issued`` (ready to redeem)."""
    cipher = TenantCipher(t.tenant_id, t.data_key)
    now = dt.datetime.now(dt.UTC)
    cards = [(f"RD{secrets.token_hex(8).upper()}", f"{secrets.randbelow(10**6):06d}") for _ in range(n)]
    rows = []
    for (number, pin), exp in zip(cards, _expiries(n, now), strict=True):
        sealed = seal(cipher, number, pin)
        rows.append((uuid7(), sealed.digest, sealed.secret, sealed.last4, exp))
    conn = await asyncpg.connect(owner_dsn)
    try:
        await _insert_codes(conn, t, "issued", rows)
        await conn.execute("ANALYZE codes")
    finally:
        await conn.close()
    return cards


async def duplicates(owner_dsn: str, t: BenchTenant) -> tuple[int, int]:
    """(grant items, codes handed out twice) of the tenant."""
    conn = await asyncpg.connect(owner_dsn)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(*) - count(DISTINCT code_id) AS dups FROM grant_items WHERE tenant_id = $1",
            t.tenant_id,
        )
        return int(row["n"]), int(row["dups"])
    finally:
        await conn.close()


ROW_TABLES = ("grants", "grant_items", "members", "audit_events", "events", "outbox", "idempotency_keys")


async def rows_written(
    owner_dsn: str, t: BenchTenant, tables: tuple[str, ...] = ROW_TABLES
) -> dict[str, int]:
    """Rows of the tenant in each table (to show that two servers wrote the same rows per request)."""
    conn = await asyncpg.connect(owner_dsn)
    try:
        return {
            table: int(await conn.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1", t.tenant_id))
            for table in tables
        }
    finally:
        await conn.close()


async def count_rows(owner_dsn: str, table: str, t: BenchTenant) -> int:
    """Rows of the tenant in ``table``."""
    return (await rows_written(owner_dsn, t, (table,)))[table]
