"""Test helpers: put a product with sealed codes in a tenant's stock (bypassing the import pipeline)."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from core.catalog.models import Product
from core.db.context import tenant_context
from core.db.ids import readable_ref
from core.inventory.models import Batch, Code
from core.inventory.vault import seal


@dataclass
class Stocked:
    product_id: uuid.UUID
    batch_id: uuid.UUID
    numbers: list[str]
    code_ids: list[uuid.UUID]


async def stock_product(
    kernel: Any,
    tenant_id: uuid.UUID,
    count: int,
    *,
    kind: str = "code",
    expiries: list[dt.datetime | None] | None = None,
    unit_cost: int = 500,
    product_id: uuid.UUID | None = None,
    with_pin: bool = True,
    uses: int | None = None,
    **product_fields: Any,
) -> Stocked:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            if product_id is None:
                product = Product(sku=f"SKU-{secrets.token_hex(4)}", kind=kind,
                                  code_format="number_pin" if with_pin else "number",
                                  name_zh="测试券", name_en="Test voucher", face_value=1000, **product_fields)
                db.add(product)
                await db.flush()
                product_id = product.id
            batch = Batch(ref=readable_ref("B"), product_id=product_id, supplier="test", unit_cost=unit_cost,
                          code_count=count)
            db.add(batch)
            await db.flush()
            cipher = await kernel.keys.cipher(db)
            numbers, codes = [], []
            for i in range(count):
                number = f"CARD{secrets.token_hex(6).upper()}"
                sealed = seal(cipher, number, f"P{secrets.token_hex(3)}" if with_pin else None)
                code = Code(product_id=product_id, batch_id=batch.id, digest=sealed.digest, secret=sealed.secret,
                            last4=sealed.last4, has_pin=sealed.has_pin,
                            expires_at=expiries[i] if expiries else None, uses_left=uses)
                db.add(code)
                numbers.append(number)
                codes.append(code)
            await db.flush()
            return Stocked(product_id, batch.id, numbers, [c.id for c in codes])
