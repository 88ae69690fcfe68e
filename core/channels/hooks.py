"""What the channels domain plugs into the inventory's extension points."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.catalog.models import Product
from core.channels.models import Listing
from core.channels.services import stock_changed
from core.channels.sync import request_rebalance


async def batch_stocked(session: AsyncSession, product: Product, batch_id: uuid.UUID, now: dt.datetime) -> None:
    """``inventory.batch_stocked``: stock arrived, so share quotas grow, stock-pressure prices move, and the
    channels hear of it (one coalesced push per account). A product without listings costs one query."""
    await stock_changed(session, product.id)


async def stock_fell(session: AsyncSession, product_ids: set[uuid.UUID]) -> None:
    """``inventory.stock_fell``: codes were handed out, expired or voided. Listed products get their quotas
    resized by a coalesced job (one per product and window) instead of in this transaction, so a grant never
    waits on a product's quota lock; products without listings cost one indexed query."""
    listed = set((await session.execute(
        select(Listing.product_id).where(Listing.product_id.in_(product_ids)).distinct()
    )).scalars())
    for product_id in sorted(listed):
        await request_rebalance(session, product_id)
