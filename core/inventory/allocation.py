"""The one allocation service: every hand-out of codes (grants, channel orders, points mall) comes here.

``allocate`` picks first-expiring-first-out among available, unexpired codes, atomically:
on PostgreSQL one ``UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)`` statement per attempt, so concurrent
allocators never wait on each other's rows and never get the same code; on SQLite (embedded, one process)
allocations are serialised by a process lock and the same guarded UPDATE. Reservations hold codes for a
time-to-live; a lapsed reservation's codes count as available again (and a sweep tidies them up).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import uuid
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, and_, any_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.catalog.models import BundleItem, Product
from core.catalog.services import find_product
from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.ids import new_id
from core.db.locks import CrossLoopLock
from core.db.results import rowcount
from core.errors import Conflict, DomainError, FieldError, NotFound, ValidationFailed
from core.inventory.models import Code, Reservation
from core.inventory.stock import stock_fell

MAX_QUANTITY = 10_000
ALLOCATABLE_KINDS = ("code", "reusable_code", "stored_value")
_SQLITE_LOCK = CrossLoopLock()  # the API loop and each worker thread's loop allocate
_RETRIES = 40


class OutOfStock(DomainError):
    status, code = 409, "out_of_stock"


class AllocatedCode(msgspec.Struct):
    id: uuid.UUID
    batch_id: uuid.UUID
    last4: str
    expires_at: dt.datetime | None
    product_id: uuid.UUID | None = None  # the item's product when a bundle was allocated


class Allocation(msgspec.Struct):
    product_id: uuid.UUID
    purpose: str
    state: str  # "issued" | "reserved"
    codes: list[AllocatedCode]
    reservation_id: uuid.UUID | None = None
    reserved_until: dt.datetime | None = None


def available_clause(now: dt.datetime) -> ColumnElement[bool]:
    """Rows that may be handed out now: available (or in a lapsed reservation) and not expired."""
    return and_(
        or_(Code.state == "available", and_(Code.state == "reserved", Code.reserved_until < now)),
        or_(Code.expires_at.is_(None), Code.expires_at > now),
    )


async def _product(session: AsyncSession, product_id: uuid.UUID, *, bundles: bool = False,
                   loaded: Product | None = None) -> Product:
    if loaded is not None and loaded.id == product_id:
        product = loaded
    else:
        product = await find_product(session, product_id)
    if product.status != "active":
        raise Conflict("This product is not active", "该权益商品未上架", code="product_inactive")
    if product.kind not in ALLOCATABLE_KINDS and not (bundles and product.kind == "bundle"):
        raise ValidationFailed(f"Products of kind {product.kind!r} have no codes of their own",
                               f"类型为 {product.kind!r} 的商品没有自身的卡密", code="product_not_allocatable")
    return product


def _check_quantity(quantity: int) -> None:
    if not 1 <= quantity <= MAX_QUANTITY:
        raise ValidationFailed(
            f"Quantity must be between 1 and {MAX_QUANTITY}", f"数量必须在 1 到 {MAX_QUANTITY} 之间",
            errors=[FieldError(field="quantity", message=f"1..{MAX_QUANTITY}", code="out_of_range")])


async def count_available(session: AsyncSession, product_id: uuid.UUID) -> int:
    now = utcnow()
    return int(await session.scalar(
        select(func.count()).select_from(Code).where(Code.product_id == product_id, available_clause(now))
    ) or 0)


async def _take(session: AsyncSession, product_id: uuid.UUID, n: int, values: dict[str, object]) -> list[AllocatedCode]:
    """Pick-and-mark up to ``n`` FEFO codes: available ones first, then those of lapsed reservations.

    Each pass is one statement whose WHERE has a single state, so PostgreSQL walks the
    ``(tenant_id, product_id, state, expires_at)`` index in FEFO order and stops at ``n``.
    """
    now = utcnow()
    got = await _take_where(session, product_id, n, values, now, lapsed=False)
    if len(got) < n:
        got += await _take_where(session, product_id, n - len(got), values, now, lapsed=True)
    return got


@functools.lru_cache(maxsize=8)
def _pick_statement(dialect: str, lapsed: bool) -> Any:
    """The pick-and-mark UPDATE, built once per dialect and pass (allocation is CPU-bound in statement building).

    A Core statement run on the session's connection (no ORM execution overhead), so the tenant is a
    parameter here rather than the ORM filter's. Parameters: ``tenant``, ``pick_product``, ``n``, ``now``
    and the new ``set_*`` values.
    """
    c = Code.__table__.c
    now, tenant = bindparam("now", type_=c.state_changed_at.type), bindparam("tenant", type_=c.tenant_id.type)
    state = (c.state == "reserved", c.reserved_until < now) if lapsed else (c.state == "available",)
    where = (c.tenant_id == tenant, c.product_id == bindparam("pick_product", type_=c.product_id.type), *state,
             or_(c.expires_at.is_(None), c.expires_at > now))
    order = (c.expires_at.asc().nulls_last(), c.id)
    picked = select(c.id).where(*where).order_by(*order).limit(bindparam("n"))
    table = Code.__table__
    if dialect == "postgresql":
        # id = ANY(ARRAY(subquery)): the picked ids are computed once, then fetched by primary key,
        # whatever the planner's row estimates say.
        stmt = update(table).where(
            c.tenant_id == tenant, c.id == any_(func.array(picked.with_for_update(skip_locked=True).scalar_subquery())))
    else:
        stmt = update(table).where(c.tenant_id == tenant, c.id.in_(picked.scalar_subquery()))
    return stmt.values(
        state=bindparam("set_state"), reservation_id=bindparam("set_reservation_id"),
        reserved_until=bindparam("set_reserved_until"), purpose=bindparam("set_purpose"), state_changed_at=now,
    ).returning(c.id, c.batch_id, c.last4, c.expires_at)


async def _take_where(session: AsyncSession, product_id: uuid.UUID, n: int, values: dict[str, object],
                      now: dt.datetime, *, lapsed: bool) -> list[AllocatedCode]:
    dialect = session.bind.dialect.name if session.bind is not None else ""
    params = {"tenant": require_tenant(), "pick_product": product_id, "n": n, "now": now,
              **{f"set_{k}": v for k, v in values.items()}}
    if any(isinstance(o, Code) for o in (*session.new, *session.dirty)):
        await session.flush()  # the Core statement below does not autoflush: codes changed in this session first
    connection = await session.connection()
    rows = (await connection.execute(_pick_statement(dialect, lapsed), params)).all()
    got = [AllocatedCode(r.id, r.batch_id, r.last4, r.expires_at, product_id) for r in rows]
    got.sort(key=lambda c: (c.expires_at is None, c.expires_at or now, c.id))
    return got


async def _take_reusable(session: AsyncSession, product_id: uuid.UUID, n: int) -> list[AllocatedCode]:
    """Reusable codes: each unit consumes one use of the first-expiring code that has uses left."""
    now = utcnow()
    out: list[AllocatedCode] = []
    while len(out) < n:
        row = (await session.execute(
            select(Code).where(Code.product_id == product_id, Code.state == "available", Code.uses_left > 0,
                               or_(Code.expires_at.is_(None), Code.expires_at > now))
            .order_by(Code.expires_at.asc().nulls_last(), Code.id).limit(1).with_for_update()
        )).scalar_one_or_none()
        if row is None:
            break
        take = min(n - len(out), row.uses_left or 0)
        row.uses_left = (row.uses_left or 0) - take
        row.state_changed_at = now
        if row.uses_left == 0:
            row.state = "issued"
        out.extend(AllocatedCode(row.id, row.batch_id, row.last4, row.expires_at, product_id) for _ in range(take))
        await session.flush()
    return out


async def allocate(
    session: AsyncSession,
    product_id: uuid.UUID,
    quantity: int,
    purpose: str,
    *,
    reserve_for: dt.timedelta | None = None,
    product: Product | None = None,
) -> Allocation:
    """Hand out ``quantity`` codes of a product FEFO (issued now, or reserved for ``reserve_for``).

    ``product`` is the product row when the caller has already loaded it (saves reading it again).

    All or nothing: if the stock cannot cover the quantity, nothing is taken and :class:`OutOfStock` is raised.
    A bundle hands out ``quantity`` × each item's quantity of every item product (issued, never reserved).
    """
    _check_quantity(quantity)
    purpose = purpose.strip()[:120] or "unspecified"
    product = await _product(session, product_id, bundles=True, loaded=product)
    if product.kind == "bundle":
        return await _allocate_bundle(session, product, quantity, purpose, reserve_for)
    if product.kind == "reusable_code":
        async with _maybe_lock(session):
            codes = await _take_reusable(session, product_id, quantity)
            if len(codes) < quantity:
                raise _out_of_stock(product, quantity, len(codes))
        record(session, "codes.allocated", "product", product_id,
               {"purpose": purpose, "quantity": quantity, "codes": sorted({str(c.id) for c in codes})})
        await stock_fell(session, {product_id})
        return Allocation(product_id, purpose, "issued", codes)

    reservation_id = new_id() if reserve_for else None
    until = utcnow() + reserve_for if reserve_for else None
    values: dict[str, object] = (
        {"state": "reserved", "reservation_id": reservation_id, "reserved_until": until, "purpose": purpose}
        if reserve_for else {"state": "issued", "reservation_id": None, "reserved_until": None, "purpose": purpose}
    )
    codes = []
    async with _maybe_lock(session):
        for attempt in range(_RETRIES):
            codes += await _take(session, product_id, quantity - len(codes), values)
            if len(codes) == quantity:
                break
            remaining = await count_available(session, product_id)  # includes rows others hold locked
            if remaining == 0:
                break
            await asyncio.sleep(0.005 * (attempt + 1))  # others hold the rows: wait for their commit
        if len(codes) < quantity:
            raise _out_of_stock(product, quantity, len(codes))
    if reservation_id:
        session.add(Reservation(id=reservation_id, product_id=product_id, quantity=quantity, purpose=purpose,
                                status="held", expires_at=until))
    record(session, "codes.reserved" if reserve_for else "codes.allocated", "product", product_id,
           {"purpose": purpose, "quantity": quantity, "codes": [str(c.id) for c in codes],
            "reservation_id": str(reservation_id) if reservation_id else None})
    await stock_fell(session, {product_id})
    return Allocation(product_id, purpose, "reserved" if reserve_for else "issued", codes, reservation_id, until)


async def _allocate_bundle(session: AsyncSession, bundle: Product, quantity: int, purpose: str,
                           reserve_for: dt.timedelta | None) -> Allocation:
    if reserve_for is not None:
        raise ValidationFailed("Bundles are issued, not reserved", "组合权益包只能直接发放，不能预留",
                               code="bundle_not_reservable")
    items = list((await session.execute(
        select(BundleItem).where(BundleItem.bundle_id == bundle.id).order_by(BundleItem.item_id)
    )).scalars())
    if not items:
        raise ValidationFailed("This bundle has no items", "该组合权益包没有商品", code="bundle_empty")
    codes: list[AllocatedCode] = []
    for item in items:  # item order is fixed, so concurrent bundle allocations lock in the same order
        part = await allocate(session, item.item_id, quantity * item.quantity, purpose)
        codes += part.codes
    return Allocation(bundle.id, purpose, "issued", codes)


def _out_of_stock(product: Product, wanted: int, available: int) -> OutOfStock:
    # The exception aborts the caller's transaction, so the codes taken so far go back.
    return OutOfStock(
        f"Out of stock: {wanted} wanted, {available} available for {product.sku}",
        f"库存不足：需要 {wanted} 个，{product.sku} 仅剩 {available} 个可用",
        extra={"product_id": str(product.id), "requested": wanted, "available": available},
    )


class _maybe_lock:
    """Serialise allocations on SQLite (one writer); a no-op on PostgreSQL."""

    def __init__(self, session: AsyncSession) -> None:
        self.on = session.bind is not None and session.bind.dialect.name == "sqlite"

    async def __aenter__(self) -> None:
        if self.on:
            await _SQLITE_LOCK.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        if self.on:
            await _SQLITE_LOCK.__aexit__()


async def _reservation(session: AsyncSession, reservation_id: uuid.UUID) -> Reservation:
    res = (await session.execute(
        select(Reservation).where(Reservation.id == reservation_id).with_for_update()
    )).scalar_one_or_none()
    if res is None:
        raise NotFound("Reservation not found", "预留不存在", code="reservation_not_found")
    if res.status != "held":
        raise Conflict(f"Reservation is already {res.status}", f"该预留已是 {res.status} 状态",
                       code="reservation_closed")
    return res


async def confirm(session: AsyncSession, reservation_id: uuid.UUID) -> Allocation:
    """Turn a held reservation into issued codes; refused once it has lapsed."""
    res = await _reservation(session, reservation_id)
    now = utcnow()
    if res.expires_at is not None and res.expires_at <= now:
        raise Conflict("The reservation has lapsed; its codes went back to stock",
                       "预留已过期，卡密已退回库存", code="reservation_lapsed")
    rows = (await session.execute(
        update(Code).where(Code.reservation_id == reservation_id, Code.state == "reserved")
        .values(state="issued", reserved_until=None, state_changed_at=now)
        .returning(Code.id, Code.batch_id, Code.last4, Code.expires_at),
        execution_options={"synchronize_session": False},
    )).all()
    if len(rows) != res.quantity:
        raise Conflict("Some reserved codes are no longer held", "部分预留卡密已不再保留", code="reservation_broken")
    res.status = "confirmed"
    record(session, "codes.allocated", "product", res.product_id,
           {"purpose": res.purpose, "quantity": res.quantity, "codes": [str(r.id) for r in rows],
            "reservation_id": str(reservation_id)})
    return Allocation(res.product_id, res.purpose, "issued",
                      [AllocatedCode(r.id, r.batch_id, r.last4, r.expires_at, res.product_id) for r in rows])


async def release(session: AsyncSession, reservation_id: uuid.UUID, reason: str = "released") -> int:
    """Return a held reservation's codes to stock."""
    res = await _reservation(session, reservation_id)
    count = await _return_codes(session, reservation_id)
    res.status = "released"
    record(session, "codes.released", "reservation", reservation_id, {"reason": reason, "quantity": count})
    return count


async def _return_codes(session: AsyncSession, reservation_id: uuid.UUID) -> int:
    result = await session.execute(
        update(Code).where(Code.reservation_id == reservation_id, Code.state == "reserved")
        .values(state="available", reservation_id=None, reserved_until=None, purpose=None,
                state_changed_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    return rowcount(result)


async def sweep_lapsed_reservations(session: AsyncSession) -> int:
    """Mark lapsed reservations and put their (still reserved) codes back to available; returns codes freed."""
    now = utcnow()
    lapsed = list((await session.execute(
        select(Reservation).where(Reservation.status == "held", Reservation.expires_at <= now)
    )).scalars())
    freed = 0
    for res in lapsed:
        n = await _return_codes(session, res.id)
        res.status = "lapsed"
        freed += n
        record(session, "codes.reservation_lapsed", "reservation", res.id, {"quantity": n})
    return freed
