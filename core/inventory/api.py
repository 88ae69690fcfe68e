"""Inventory API under ``/api/v1``: stock, batches, masked codes, void, audited reveal and export, stock
alerts, allocations and reservations.

The read services at the top (stock, batches, codes, alerts) are shared with the console; the rules of
allocation, custody and stock live in :mod:`core.inventory.allocation`, :mod:`~core.inventory.custody`
and :mod:`~core.inventory.stock`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.catalog.services import find_product
from core.db.paging import keyset_page, keyset_rows
from core.errors import DomainError, FieldError, NotFound, ValidationFailed
from core.inventory import allocation, custody
from core.inventory.models import CODE_STATES, Batch, Code
from core.inventory.schemas import (
    AllocatedCodeOut,
    AllocationIn,
    AllocationOut,
    BatchDetail,
    BatchOut,
    BatchPage,
    BatchStockOut,
    CodePage,
    ExportIn,
    MaskedCodeOut,
    ProductStockOut,
    ReleaseIn,
    ReleaseOut,
    RevealedCodeOut,
    RevealIn,
    StockAlertOut,
    StockLevelOut,
    VoidIn,
    VoidOut,
)
from core.inventory.stock import StockLevel, open_alerts, stock_levels
from core.inventory.vault import masked
from tenants.guards import principal_of, provide_db, require_scope

MAX_PAGE = 500
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# --- read services (API and console) ---------------------------------------------------------------


def level_out(level: StockLevel) -> StockLevelOut:
    return StockLevelOut(level.available, level.reserved, level.issued, level.redeemed, level.expired,
                         level.voided, level.total, level.available_value, level.currency)


def batch_out(b: Batch) -> BatchOut:
    return BatchOut(b.id, b.ref, b.product_id, b.source, b.supplier, b.unit_cost, b.currency, b.purchase_ref,
                    b.expires_at, b.notes, b.code_count, b.created_at)


def check_states(states: list[str], field: str = "states") -> tuple[str, ...]:
    """Refuse unknown code states (422) instead of silently matching nothing."""
    unknown = [s for s in states if s not in CODE_STATES]
    if unknown or not states:
        raise ValidationFailed(f"States must be among {', '.join(CODE_STATES)}",
                               f"状态必须是 {', '.join(CODE_STATES)} 之一",
                               errors=[FieldError(field=field, message="unknown state", code="invalid_choice")])
    return tuple(dict.fromkeys(states))


async def find_batch(db: AsyncSession, batch_id: uuid.UUID) -> Batch:
    batch = (await db.execute(select(Batch).where(Batch.id == batch_id))).scalar_one_or_none()
    if batch is None:
        raise NotFound("Batch not found", "批次不存在", code="batch_not_found")
    return batch


async def product_stock(db: AsyncSession, product_id: uuid.UUID) -> ProductStockOut:
    """A product's codes by state with the cost value of what is available; the same per batch."""
    product = await find_product(db, product_id)
    total = (await stock_levels(db, product.id)).get(product.id, StockLevel(currency=product.currency))
    per_batch = await stock_levels(db, product.id, by="batch")
    batches = (await db.execute(select(Batch).where(Batch.product_id == product.id).order_by(Batch.id))).scalars()
    return ProductStockOut(
        product.id, product.sku, product.kind, level_out(total),
        [BatchStockOut(b.id, b.ref, b.supplier, b.unit_cost, b.currency, b.expires_at,
                       level_out(per_batch.get(b.id, StockLevel(currency=b.currency)))) for b in batches],
    )


async def list_batches(
    db: AsyncSession, product_id: uuid.UUID | None, cursor: uuid.UUID | None, limit: int
) -> BatchPage:
    """Batches newest first, optionally of one product (404 if the product is not the tenant's)."""
    q = select(Batch)
    if product_id is not None:
        await find_product(db, product_id)
        q = q.where(Batch.product_id == product_id)
    page = await keyset_page(db, q, Batch.id, cursor=cursor, limit=limit)
    return BatchPage([batch_out(b) for b in page.items], page.next_cursor)


async def get_batch(db: AsyncSession, batch_id: uuid.UUID) -> BatchDetail:
    batch = await find_batch(db, batch_id)
    level = (await stock_levels(db, batch.product_id, by="batch")).get(batch.id, StockLevel(currency=batch.currency))
    return BatchDetail(batch_out(batch), level_out(level))


async def list_codes(
    db: AsyncSession,
    *,
    batch_id: uuid.UUID | None = None,
    product_id: uuid.UUID | None = None,
    state: str | None = None,
    cursor: uuid.UUID | None = None,
    limit: int = 100,
) -> CodePage:
    """Codes masked (``•••• 1234``), oldest first; never the number or the PIN."""
    q = select(Code.id, Code.product_id, Code.batch_id, Code.last4, Code.has_pin, Code.state, Code.expires_at,
               Code.uses_left)
    if batch_id is not None:
        await find_batch(db, batch_id)
        q = q.where(Code.batch_id == batch_id)
    if product_id is not None:
        await find_product(db, product_id)
        q = q.where(Code.product_id == product_id)
    if state is not None:
        q = q.where(Code.state == check_states([state], "state")[0])
    page = await keyset_rows(db, q, Code.id, cursor=cursor, limit=limit, descending=False)
    items = [MaskedCodeOut(r.id, r.product_id, r.batch_id, masked(r.last4), r.has_pin, r.state, r.expires_at,
                           r.uses_left) for r in page.items]
    return CodePage(items, page.next_cursor)


async def list_open_alerts(db: AsyncSession) -> list[StockAlertOut]:
    return [StockAlertOut(a.id, a.product_id, p.sku, p.name_zh, a.kind, a.status, a.details, a.created_at)
            for a, p in await open_alerts(db)]


def allocation_out(a: allocation.Allocation) -> AllocationOut:
    return AllocationOut(a.product_id, a.purpose, a.state,
                         [AllocatedCodeOut(c.id, c.batch_id, masked(c.last4), c.expires_at) for c in a.codes],
                         a.reservation_id, a.reserved_until)


# --- HTTP ----------------------------------------------------------------------------------------------


def _refuse_idempotency_key(request: Request[Any, Any, Any]) -> None:
    """Plaintext answers are never stored, so they cannot be replayed under an Idempotency-Key."""
    if "idempotency-key" in request.headers:
        raise DomainError("Reveal and export answers are never stored; send them without Idempotency-Key",
                          "明文查看与导出的结果不会被保存，请勿携带 Idempotency-Key", code="idempotency_not_supported",
                          status=400)


class InventoryController(Controller):
    path = "/api/v1"
    tags = ["inventory"]
    dependencies = {"db": Provide(provide_db)}

    @get("/products/{product_id:uuid}/stock", guards=[require_scope("inventory:read")])
    async def stock(self, db: AsyncSession, product_id: uuid.UUID) -> ProductStockOut:
        """Codes per state and the available value at cost, for the product and per batch."""
        return await product_stock(db, product_id)

    @get("/batches", guards=[require_scope("inventory:read")])
    async def batches(
        self,
        db: AsyncSession,
        product_id: uuid.UUID | None = None,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = 50,
    ) -> BatchPage:
        return await list_batches(db, product_id, cursor, limit)

    @get("/batches/{batch_id:uuid}", guards=[require_scope("inventory:read")])
    async def batch(self, db: AsyncSession, batch_id: uuid.UUID) -> BatchDetail:
        return await get_batch(db, batch_id)

    @get("/codes", guards=[require_scope("inventory:read")])
    async def codes(
        self,
        db: AsyncSession,
        batch_id: uuid.UUID | None = None,
        product_id: uuid.UUID | None = None,
        code_state: Annotated[str | None, Parameter(query="state")] = None,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = 100,
    ) -> CodePage:
        """Masked codes, filtered by batch, product and state."""
        return await list_codes(db, batch_id=batch_id, product_id=product_id, state=code_state, cursor=cursor,
                                limit=limit)

    @post("/codes/void", status_code=200, guards=[require_scope("inventory:write")])
    async def void(self, db: AsyncSession, data: VoidIn) -> VoidOut:
        """Void codes with a reason; they never go out again and unused ones are written off."""
        return VoidOut(await custody.void_codes(db, data.code_ids, data.reason))

    @post("/codes/{code_id:uuid}/reveal", status_code=200, guards=[require_scope("codes:reveal")])
    async def reveal(
        self, request: Request[Any, Any, Any], db: AsyncSession, code_id: uuid.UUID, data: RevealIn
    ) -> Response[RevealedCodeOut]:
        """The plaintext number and PIN, audited with the reason; rate-limited; never cached."""
        _refuse_idempotency_key(request)
        code = await custody.reveal(db, request.app.state.kernel.keys, code_id, data.reason, principal_of(request))
        return Response(RevealedCodeOut(code.id, code.number, code.pin, code.state, code.expires_at),
                        headers=NO_STORE)

    @post(
        "/batches/{batch_id:uuid}/export",
        status_code=200,
        guards=[require_scope("codes:reveal")],
        media_type="text/csv",
    )
    async def export(
        self, request: Request[Any, Any, Any], db: AsyncSession, batch_id: uuid.UUID, data: ExportIn
    ) -> Response[bytes]:
        """A CSV (UTF-8 with BOM) of the batch's codes in ``states``, audited with the reason; never cached."""
        _refuse_idempotency_key(request)
        states = check_states(data.states)
        name, body = await custody.export_batch(db, request.app.state.kernel.keys, batch_id, data.reason,
                                                principal_of(request), states)
        return Response(body, media_type="text/csv; charset=utf-8",
                        headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'})

    @get("/stock-alerts", guards=[require_scope("inventory:read")])
    async def alerts(self, db: AsyncSession) -> list[StockAlertOut]:
        """Open low-stock and near-expiry alerts, newest first."""
        return await list_open_alerts(db)

    @post("/allocations", guards=[require_scope("inventory:write")])
    async def allocate(self, db: AsyncSession, data: AllocationIn) -> AllocationOut:
        """Take codes FEFO (issued, or held for ``reserve_seconds``); ``409 out_of_stock`` takes nothing."""
        reserve = dt.timedelta(seconds=data.reserve_seconds) if data.reserve_seconds else None
        return allocation_out(await allocation.allocate(db, data.product_id, data.quantity, data.purpose,
                                                        reserve_for=reserve))

    @post("/reservations/{reservation_id:uuid}/confirm", status_code=200, guards=[require_scope("inventory:write")])
    async def confirm(self, db: AsyncSession, reservation_id: uuid.UUID) -> AllocationOut:
        """Issue a held reservation's codes; ``409 reservation_lapsed`` once its time is up."""
        return allocation_out(await allocation.confirm(db, reservation_id))

    @post("/reservations/{reservation_id:uuid}/release", status_code=200, guards=[require_scope("inventory:write")])
    async def release(
        self, db: AsyncSession, reservation_id: uuid.UUID, data: ReleaseIn | None = None
    ) -> ReleaseOut:
        """Return a held reservation's codes to stock."""
        reason = data.reason if data is not None else "released"
        return ReleaseOut(reservation_id, await allocation.release(db, reservation_id, reason or "released"))
