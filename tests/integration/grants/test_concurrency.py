"""On PostgreSQL, concurrent grants never share a code and never over-grant the stock."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from core.db.context import tenant_context
from core.grants.models import GrantItem
from core.grants.schemas import GrantRequest
from core.grants.services import create_grant
from core.inventory.allocation import OutOfStock


async def test_concurrent_grants_never_share_a_code(shop, kernel, test_env):
    if test_env.backend != "postgresql":
        pytest.skip("concurrency is tested on PostgreSQL")
    s = await shop.stock(60)

    async def one(i: int) -> int:
        with tenant_context(shop.id):
            try:
                async with kernel.db.transaction() as db:
                    # two grants go to the same phone: member creation races too
                    phone = "13900000000" if i < 2 else f"139{i:08d}"
                    g = await create_grant(
                        db,
                        kernel,
                        GrantRequest(product_id=s.product_id, quantity=2, phone=phone, channel="none"),
                        source="api",
                    )
                    return g.quantity
            except OutOfStock:
                return 0

    granted = await asyncio.gather(*(one(i) for i in range(40)))
    assert sum(granted) == 60  # 30 grants of 2 got codes, 10 were out of stock

    async def check(db):
        rows = (await db.execute(select(GrantItem.code_id))).scalars().all()
        members = (await db.execute(select(func.count(func.distinct(GrantItem.member_id))))).scalar_one()
        return rows, members

    rows, _members = await shop.run(check)
    assert len(rows) == 60 and len(set(rows)) == 60
