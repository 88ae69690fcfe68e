"""Test helpers: codes in the ``issued`` state (stocked, then taken by the allocation service), their PINs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from core.db.context import tenant_context
from core.inventory.allocation import allocate
from core.inventory.models import Code
from core.inventory.vault import unseal
from core.redemption.models import Redemption
from tests.integration.inventory.stocking import stock_product


@dataclass
class Issued:
    product_id: uuid.UUID
    numbers: list[str]
    pins: list[str | None]
    code_ids: list[uuid.UUID]


async def pins_of(kernel: Any, tenant_id: uuid.UUID, code_ids: list[uuid.UUID]) -> list[str | None]:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            cipher = await kernel.keys.cipher(db)
            rows = {r.id: r for r in (await db.execute(select(Code).where(Code.id.in_(code_ids)))).scalars()}
            return [unseal(cipher, rows[i].digest, rows[i].secret)[1] for i in code_ids]


async def issued_codes(
    kernel: Any, tenant_id: uuid.UUID, count: int, *, allocate_count: int | None = None, **stock: Any
) -> Issued:
    """Stock ``count`` codes and allocate ``allocate_count`` units (default: all) so they are issued."""
    s = await stock_product(kernel, tenant_id, count, **stock)
    units = count if allocate_count is None else allocate_count
    if units:
        with tenant_context(tenant_id):
            async with kernel.db.transaction() as db:
                await allocate(db, s.product_id, units, "redemption test")
    return Issued(s.product_id, s.numbers, await pins_of(kernel, tenant_id, s.code_ids), s.code_ids)


async def code_state(kernel: Any, tenant_id: uuid.UUID, code_id: uuid.UUID) -> str:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return str(await db.scalar(select(Code.state).where(Code.id == code_id)))


async def age_redemption(kernel: Any, tenant_id: uuid.UUID, redemption_id: uuid.UUID, minutes: float) -> None:
    """Move a redemption's time ``minutes`` into the past (instead of sleeping through the window)."""
    import datetime as dt

    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            red = (await db.execute(select(Redemption).where(Redemption.id == redemption_id))).scalar_one()
            await db.execute(
                update(Redemption)
                .where(Redemption.id == redemption_id)
                .values(created_at=red.created_at - dt.timedelta(minutes=minutes))
            )
