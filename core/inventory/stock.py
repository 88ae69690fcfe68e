"""Stock levels, value at cost, the expiry sweep (with write-off cost) and low-stock / near-expiry alerts."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict

import msgspec
from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.catalog.models import Product
from core.db.base import utcnow
from core.domains import extensions
from core.events.services import emit
from core.inventory.models import CODE_STATES, Batch, Code, StockAlert, WriteOff

#: The extension point told, in the same transaction, that products' available stock fell (codes handed out,
#: expired or voided): ``await fell(session, product_ids)``. The sales channels resize listing quotas on it.
STOCK_FELL = "inventory.stock_fell"
DEFAULT_WATERMARK = 0.10
USAGE_WINDOW_DAYS = 30


async def stock_fell(session: AsyncSession, product_ids: set[uuid.UUID]) -> None:
    """Tell whoever follows the stock (``inventory.stock_fell``) that these products have fewer codes to give."""
    if product_ids:
        for fell in extensions(STOCK_FELL):
            await fell(session, product_ids)


class StockLevel(msgspec.Struct):
    """Counts by state and the cost value of what is still available."""

    available: int = 0
    reserved: int = 0
    issued: int = 0
    redeemed: int = 0
    expired: int = 0
    voided: int = 0
    available_value: int = 0  # fen, at unit cost
    currency: str = "CNY"

    @property
    def total(self) -> int:
        return sum(getattr(self, s) for s in CODE_STATES)


async def product_has_codes(session: AsyncSession, product_id: uuid.UUID) -> bool:
    """Whether the product has any code in the inventory, in any state (the catalog then fixes its format)."""
    found = await session.execute(select(Code.id).where(Code.product_id == product_id).limit(1))
    return found.first() is not None


async def stock_levels(
    session: AsyncSession, product_id: uuid.UUID | None = None, by: str = "product"
) -> dict[uuid.UUID, StockLevel]:
    """Stock per product (``by="product"``) or per batch (``by="batch"``). Codes past their expiry that the
    sweep has not reached yet already count as expired."""
    now = utcnow()
    effective = case(
        ((Code.state.in_(("available", "reserved"))) & (Code.expires_at <= now), "expired"),
        ((Code.state == "reserved") & (Code.reserved_until < now), "available"),
        else_=Code.state,
    )
    key = Code.product_id if by == "product" else Code.batch_id
    q = (
        select(key, effective.label("st"), func.count(), func.sum(Batch.unit_cost), func.min(Batch.currency))
        .join(Batch, (Batch.tenant_id == Code.tenant_id) & (Batch.id == Code.batch_id))
        .group_by(key, effective)
    )
    if product_id is not None:
        q = q.where(Code.product_id == product_id)
    out: dict[uuid.UUID, StockLevel] = defaultdict(StockLevel)
    for k, state, count, cost, currency in (await session.execute(q)).all():
        level = out[k]
        setattr(level, state, getattr(level, state) + int(count))
        if state == "available":
            level.available_value += int(cost or 0)
        level.currency = currency or level.currency
    return dict(out)


async def expire_codes(session: AsyncSession) -> int:
    """Expire every available/reserved code past its date; write off its cost per batch; audit per batch."""
    now = utcnow()
    rows = (await session.execute(
        update(Code).where(Code.state.in_(("available", "reserved")), Code.expires_at <= now)
        .values(state="expired", reservation_id=None, reserved_until=None, state_changed_at=now)
        .returning(Code.batch_id, Code.product_id),
        execution_options={"synchronize_session": False},
    )).all()
    if not rows:
        return 0
    await stock_fell(session, {product_id for _, product_id in rows})
    per_batch: dict[tuple[uuid.UUID, uuid.UUID], int] = defaultdict(int)
    for batch_id, product_id in rows:
        per_batch[(batch_id, product_id)] += 1
    batches = {b.id: b for b in (await session.execute(
        select(Batch).where(Batch.id.in_({b for b, _ in per_batch}))
    )).scalars()}
    for (batch_id, product_id), count in per_batch.items():
        batch = batches[batch_id]
        cost = count * batch.unit_cost
        session.add(WriteOff(product_id=product_id, batch_id=batch_id, reason="expired", quantity=count,
                             cost=cost, currency=batch.currency))
        record(session, "codes.expired", "batch", batch_id,
               {"batch_ref": batch.ref, "quantity": count, "write_off_cost": cost, "currency": batch.currency})
    return len(rows)


class AlertCheck(msgspec.Struct):
    opened: list[str]
    resolved: list[str]


async def _usage_per_day(session: AsyncSession, product_id: uuid.UUID) -> float:
    since = utcnow() - dt.timedelta(days=USAGE_WINDOW_DAYS)
    used = await session.scalar(
        select(func.count()).select_from(Code).where(
            Code.product_id == product_id, Code.state.in_(("issued", "redeemed")), Code.state_changed_at >= since)
    )
    return int(used or 0) / USAGE_WINDOW_DAYS


async def evaluate_alerts(session: AsyncSession, product_id: uuid.UUID | None = None) -> AlertCheck:
    """Open or resolve low-stock and near-expiry alerts for the tenant's active code products.

    Low stock: below the product's absolute threshold, or below N days of cover at the last 30 days' usage,
    or — when neither is set — below the default watermark of 10% of all codes ever stocked.
    Near expiry: available codes expiring within the product's ``near_expiry_days``.
    Opening an alert also emits a ``stock.low`` / ``stock.near_expiry`` event (the feed webhooks relay from).
    """
    q = select(Product).where(Product.status == "active", Product.kind.in_(("code", "reusable_code", "stored_value")))
    if product_id is not None:
        q = q.where(Product.id == product_id)
    products = list((await session.execute(q)).scalars())
    levels = await stock_levels(session, product_id)
    now = utcnow()
    opened: list[str] = []
    resolved: list[str] = []
    for product in products:
        level = levels.get(product.id, StockLevel())
        if level.total == 0:
            continue
        low, low_details = await _low_stock(session, product, level)
        soon = now + dt.timedelta(days=product.near_expiry_days)
        expiring, first_expiry = (await session.execute(
            select(func.count(), func.min(Code.expires_at)).where(
                Code.product_id == product.id, Code.state == "available", Code.expires_at > now,
                Code.expires_at <= soon)
        )).one()
        near = int(expiring or 0) > 0
        near_details = {"expiring": int(expiring or 0), "within_days": product.near_expiry_days,
                        "first_expiry": first_expiry.isoformat() if first_expiry else None}
        for kind, active, details in (("low_stock", low, low_details), ("near_expiry", near, near_details)):
            alert = (await session.execute(
                select(StockAlert).where(StockAlert.product_id == product.id, StockAlert.kind == kind,
                                         StockAlert.status == "open")
            )).scalar_one_or_none()
            if active and alert is None:
                alert = StockAlert(product_id=product.id, kind=kind, status="open", details=details)
                session.add(alert)
                await session.flush()
                record(session, f"stock.{kind}", "product", product.id, details)
                emit(session, "stock.low" if kind == "low_stock" else "stock.near_expiry", product.id,
                     {"product_id": product.id, "sku": product.sku, "alert_id": alert.id, **details})
                opened.append(f"{product.sku}:{kind}")
            elif active and alert is not None:
                alert.details = details
            elif not active and alert is not None:
                alert.status, alert.resolved_at = "resolved", now
                resolved.append(f"{product.sku}:{kind}")
    return AlertCheck(opened, resolved)


async def _low_stock(session: AsyncSession, product: Product, level: StockLevel) -> tuple[bool, dict[str, object]]:
    available = level.available
    details: dict[str, object] = {"available": available}
    if product.low_stock_threshold is not None:
        details["threshold"] = product.low_stock_threshold
        return available <= product.low_stock_threshold, details
    if product.low_stock_days_cover is not None:
        per_day = await _usage_per_day(session, product.id)
        cover = available / per_day if per_day else None
        details.update(days_cover=round(cover, 1) if cover is not None else None,
                       min_days_cover=product.low_stock_days_cover, usage_per_day=round(per_day, 2))
        return cover is not None and cover < product.low_stock_days_cover, details
    stocked = level.total
    details.update(watermark=DEFAULT_WATERMARK, stocked=stocked)
    return available <= stocked * DEFAULT_WATERMARK, details


async def open_alerts(
    session: AsyncSession, product_id: uuid.UUID | None = None
) -> list[tuple[StockAlert, Product]]:
    """Open alerts with their products, newest first (of one product, or all)."""
    q = (
        select(StockAlert, Product).join(Product, (Product.tenant_id == StockAlert.tenant_id)
                                         & (Product.id == StockAlert.product_id))
        .where(StockAlert.status == "open").order_by(StockAlert.created_at.desc())
    )
    if product_id is not None:
        q = q.where(StockAlert.product_id == product_id)
    return [(a, p) for a, p in (await session.execute(q)).all()]
