"""What the channels domain plugs into the inventory's extension points."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from core.catalog.models import Product
from core.channels.services import stock_changed


async def batch_stocked(session: AsyncSession, product: Product, batch_id: uuid.UUID, now: dt.datetime) -> None:
    """``inventory.batch_stocked``: stock arrived, so share quotas grow, stock-pressure prices move, and the
    channels hear of it (one coalesced push per account). A product without listings costs one query."""
    await stock_changed(session, product.id)
