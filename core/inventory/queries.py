"""Inventory reads shared by the API and the console: stock, batches, masked codes and open alerts.

The rules of allocation, custody and stock live in :mod:`core.inventory.allocation`,
:mod:`~core.inventory.custody` and :mod:`~core.inventory.stock`; this module only reads, and never
returns a code's number or PIN.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from core.catalog.schemas import ProductFilter, ProductOut
from core.catalog.services import CODE_KINDS, find_product, list_products
from core.catalog.services import MAX_PAGE as PRODUCT_PAGE
from core.db.paging import NumberedPage, keyset_page, keyset_rows, numbered_page
from core.errors import FieldError, NotFound, ValidationFailed
from core.inventory.importing.services import accepts_codes
from core.inventory.models import CODE_STATES, Batch, Code
from core.inventory.schemas import (
    BatchDetail,
    BatchOut,
    BatchPage,
    BatchStockOut,
    CodePage,
    MaskedCodeOut,
    ProductStockOut,
    StockAlertOut,
    StockLevelOut,
)
from core.inventory.stock import StockLevel, open_alerts, stock_levels
from core.inventory.vault import masked


def level_out(level: StockLevel) -> StockLevelOut:
    """A stock level as the API shows it."""
    return StockLevelOut(
        level.available,
        level.reserved,
        level.issued,
        level.redeemed,
        level.expired,
        level.voided,
        level.total,
        level.available_value,
        level.currency,
    )


def batch_out(b: Batch) -> BatchOut:
    """A batch as the API shows it."""
    return BatchOut(
        b.id,
        b.ref,
        b.product_id,
        b.source,
        b.supplier,
        b.unit_cost,
        b.currency,
        b.purchase_ref,
        b.expires_at,
        b.notes,
        b.code_count,
        b.created_at,
    )


def check_states(states: list[str], field: str = "states") -> tuple[str, ...]:
    """Refuse unknown code states (422) instead of silently matching nothing."""
    unknown = [s for s in states if s not in CODE_STATES]
    if unknown or not states:
        raise ValidationFailed(
            f"States must be among {', '.join(CODE_STATES)}",
            f"状态必须是 {', '.join(CODE_STATES)} 之一",
            errors=[FieldError(field=field, message="unknown state", code="invalid_choice")],
        )
    return tuple(dict.fromkeys(states))


async def find_batch(session: AsyncSession, batch_id: uuid.UUID) -> Batch:
    """The tenant's batch (model); 404 ``batch_not_found`` otherwise."""
    batch = (await session.execute(select(Batch).where(Batch.id == batch_id))).scalar_one_or_none()
    if batch is None:
        raise NotFound("Batch not found", "批次不存在", code="batch_not_found")
    return batch


async def product_stock(session: AsyncSession, product_id: uuid.UUID) -> ProductStockOut:
    """A product's codes by state with the cost value of what is available; the same per batch."""
    product = await find_product(session, product_id)
    total = (await stock_levels(session, product.id)).get(product.id, StockLevel(currency=product.currency))
    per_batch = await stock_levels(session, product.id, by="batch")
    batches = (
        await session.execute(select(Batch).where(Batch.product_id == product.id).order_by(Batch.id))
    ).scalars()
    return ProductStockOut(
        product.id,
        product.sku,
        product.kind,
        level_out(total),
        [
            BatchStockOut(
                b.id,
                b.ref,
                b.supplier,
                b.unit_cost,
                b.currency,
                b.expires_at,
                level_out(per_batch.get(b.id, StockLevel(currency=b.currency))),
            )
            for b in batches
        ],
    )


async def list_batches(
    session: AsyncSession, product_id: uuid.UUID | None, cursor: uuid.UUID | None, limit: int
) -> BatchPage:
    """Batches newest first, optionally of one product (404 if the product is not the tenant's)."""
    q = select(Batch)
    if product_id is not None:
        await find_product(session, product_id)
        q = q.where(Batch.product_id == product_id)
    page = await keyset_page(session, q, Batch.id, cursor=cursor, limit=limit)
    return BatchPage([batch_out(b) for b in page.items], page.next_cursor)


async def batches_by_number(
    session: AsyncSession, product_id: uuid.UUID | None, page: int, per_page: int
) -> NumberedPage[BatchOut]:
    """Page ``page`` of the batches (newest first, optionally of one product) with their total count, for the
    console's numbered pager; 404 if the product is not the tenant's."""
    q = select(Batch)
    if product_id is not None:
        await find_product(session, product_id)
        q = q.where(Batch.product_id == product_id)
    found = await numbered_page(session, q, Batch.id, page=page, per_page=per_page)
    return NumberedPage([batch_out(b) for b in found.items], found.total, found.page, found.per_page)


async def get_batch(session: AsyncSession, batch_id: uuid.UUID) -> BatchDetail:
    """A batch with its stock by state."""
    batch = await find_batch(session, batch_id)
    levels = await stock_levels(session, batch.product_id, by="batch")
    return BatchDetail(batch_out(batch), level_out(levels.get(batch.id, StockLevel(currency=batch.currency))))


def _masked_out(row: Row) -> MaskedCodeOut:
    return MaskedCodeOut(
        row.id,
        row.product_id,
        row.batch_id,
        masked(row.last4),
        row.has_pin,
        row.state,
        row.expires_at,
        row.uses_left,
    )


_MASKED_COLUMNS = (
    Code.id,
    Code.product_id,
    Code.batch_id,
    Code.last4,
    Code.has_pin,
    Code.state,
    Code.expires_at,
    Code.uses_left,
)


async def list_codes(
    session: AsyncSession,
    *,
    batch_id: uuid.UUID | None = None,
    product_id: uuid.UUID | None = None,
    state: str | None = None,
    cursor: uuid.UUID | None = None,
    limit: int = 100,
) -> CodePage:
    """Codes masked (``•••• 1234``), oldest first; never the number or the PIN."""
    q = select(*_MASKED_COLUMNS)
    if batch_id is not None:
        await find_batch(session, batch_id)
        q = q.where(Code.batch_id == batch_id)
    if product_id is not None:
        await find_product(session, product_id)
        q = q.where(Code.product_id == product_id)
    if state is not None:
        q = q.where(Code.state == check_states([state], "state")[0])
    page = await keyset_rows(session, q, Code.id, cursor=cursor, limit=limit, descending=False)
    return CodePage([_masked_out(r) for r in page.items], page.next_cursor)


async def get_code(session: AsyncSession, code_id: uuid.UUID) -> MaskedCodeOut:
    """One code, masked; 404 ``code_not_found`` when it is not the tenant's."""
    row = (await session.execute(select(*_MASKED_COLUMNS).where(Code.id == code_id))).one_or_none()
    if row is None:
        raise NotFound("Code not found", "卡密不存在", code="code_not_found")
    return _masked_out(row)


async def codes_in_batch(
    session: AsyncSession, batch_id: uuid.UUID, code_ids: list[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``code_ids`` belong to the batch."""
    if not code_ids:
        return set()
    stmt = select(Code.id).where(Code.batch_id == batch_id, Code.id.in_(code_ids))
    return set((await session.execute(stmt)).scalars())


async def list_open_alerts(session: AsyncSession, product_id: uuid.UUID | None = None) -> list[StockAlertOut]:
    """Open low-stock and near-expiry alerts, newest first (of one product, or all)."""
    return [
        StockAlertOut(a.id, a.product_id, p.sku, p.name_zh, a.kind, a.status, a.details, a.created_at)
        for a, p in await open_alerts(session, product_id)
    ]


@dataclass
class StockOverview:
    """The stock of a page of code products: their levels, the open alerts and the value at cost."""

    products: list[ProductOut]
    """Code products that are not archived, newest first."""
    levels: dict[uuid.UUID, StockLevel]
    """Every product's level (products without codes are absent)."""
    alerts: list[StockAlertOut]
    """All open alerts, newest first."""
    value: dict[str, int]
    """The available codes' cost per currency, of the products on this page."""
    next_cursor: uuid.UUID | None


async def stock_overview(session: AsyncSession, cursor: uuid.UUID | None, limit: int) -> StockOverview:
    """One page of the stock list: products (from ``cursor``), their levels, open alerts and value at cost."""
    page = await list_products(session, ProductFilter(), cursor, limit)
    products = [p for p in page.items if p.kind in CODE_KINDS and p.status != "archived"]
    levels = await stock_levels(session)
    value: dict[str, int] = defaultdict(int)
    for p in products:
        level = levels.get(p.id)
        if level is not None:
            value[level.currency] += level.available_value
    return StockOverview(products, levels, await list_open_alerts(session), dict(value), page.next_cursor)


async def importable_products(session: AsyncSession, *, number_only: bool = False) -> list[ProductOut]:
    """Products codes can be imported into, newest first; ``number_only``: those whose codes are a bare
    number (what code generation makes)."""
    page = await list_products(session, ProductFilter(), None, PRODUCT_PAGE)
    return [
        p
        for p in page.items
        if accepts_codes(p.kind, p.status) and (not number_only or p.code_format == "number")
    ]
