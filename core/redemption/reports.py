"""Redemption reports: counts and value per store and per clerk (console user) over whole days in the
tenant's time zone, aggregated in SQL.

The value of a redemption is what it took: the amount spent of a stored-value card, else the product's
face value (one use of a code). Rolled-back redemptions are counted apart and add no value.
"""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.catalog.models import Product
from core.db.context import require_tenant
from core.errors import FieldError, ValidationFailed
from core.redemption.models import Redemption
from core.redemption.schemas import RedemptionSummary, SummaryRow
from core.stores.models import Store
from tenants.models import Tenant, User

#: The longest range a summary covers (days).
MAX_DAYS = 366


async def tenant_zone(session: AsyncSession) -> str:
    zone = await session.scalar(select(Tenant.timezone).where(Tenant.id == require_tenant()))
    try:
        ZoneInfo(zone or "")
    except (ZoneInfoNotFoundError, ValueError):
        return "Asia/Shanghai"
    return str(zone)


def today_in(zone: str) -> dt.date:
    """Today's date in ``zone`` (Asia/Shanghai when the zone is unknown)."""
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("Asia/Shanghai")
    return dt.datetime.now(dt.UTC).astimezone(tz).date()


def _bad_range(en: str, zh: str) -> ValidationFailed:
    return ValidationFailed(en, zh, errors=[FieldError(field="to", message=en, code="invalid_range")])


FIRST_YEAR, LAST_YEAR = 2000, 2999  # whole days of any real report; 9999-12-31 + 1 day would not exist


def day_range(first: dt.date, last: dt.date, zone: str) -> tuple[dt.datetime, dt.datetime]:
    """``[start of first, end of last)`` in ``zone``, as UTC instants; a clear 422 for a bad range."""
    if not (first.year >= FIRST_YEAR and last.year <= LAST_YEAR):
        raise _bad_range(f"Dates run from {FIRST_YEAR} to {LAST_YEAR}", f"日期须在 {FIRST_YEAR} 年至 {LAST_YEAR} 年之间")
    if last < first:
        raise _bad_range("The end date is before the start date", "结束日期早于开始日期")
    if (last - first).days >= MAX_DAYS:
        raise _bad_range(f"A report covers at most {MAX_DAYS} days", f"报表最多覆盖 {MAX_DAYS} 天")
    tz = ZoneInfo(zone)
    since = dt.datetime.combine(first, dt.time(), tzinfo=tz).astimezone(dt.UTC)
    until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=tz).astimezone(dt.UTC)
    return since, until


async def summary(
    session: AsyncSession,
    first: dt.date,
    last: dt.date,
    *,
    store_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
) -> RedemptionSummary:
    """Redemptions from ``first`` to ``last`` (whole days, tenant zone) per store and per clerk."""
    zone = await tenant_zone(session)
    since, until = day_range(first, last, zone)
    R = Redemption
    done = R.status == "redeemed"
    value = func.coalesce(R.amount, Product.face_value)
    figures = (
        func.sum(case((done, 1), else_=0)).label("n"),
        func.coalesce(func.sum(case((done, value), else_=0)), 0).label("value"),
        func.sum(case((done, 0), else_=1)).label("rolled_back"),
    )
    where = [R.created_at >= since, R.created_at < until]
    if store_id is not None:
        where.append(R.store_id == store_id)
    if user_id is not None:
        where.append(R.user_id == user_id)
    joined = and_(Product.tenant_id == R.tenant_id, Product.id == R.product_id)
    free_text = case((R.store_id.is_(None), R.store), else_="")
    per_store = (
        select(R.store_id, free_text.label("text"), Store.code, Store.name, *figures)
        .select_from(R)
        .join(Product, joined)
        .outerjoin(Store, and_(Store.tenant_id == R.tenant_id, Store.id == R.store_id))
        .where(*where)
        .group_by(R.store_id, free_text, Store.code, Store.name)
        .order_by(Store.code, free_text)
    )
    per_user = (
        select(R.user_id, User.email, User.name, *figures)
        .select_from(R)
        .join(Product, joined)
        .outerjoin(User, and_(User.tenant_id == R.tenant_id, User.id == R.user_id))
        .where(*where)
        .group_by(R.user_id, User.email, User.name)
        .order_by(User.email)
    )
    stores = [
        SummaryRow(
            id=r.store_id,
            code=r.code or "",
            label=r.name or r.text or "",
            count=int(r.n or 0),
            value=int(r.value or 0),
            rolled_back=int(r.rolled_back or 0),
        )
        for r in (await session.execute(per_store)).all()
    ]
    users = [
        SummaryRow(
            id=r.user_id,
            code=r.email or "",
            label=r.name or r.email or "",
            count=int(r.n or 0),
            value=int(r.value or 0),
            rolled_back=int(r.rolled_back or 0),
        )
        for r in (await session.execute(per_user)).all()
    ]
    return RedemptionSummary(
        first_day=first, last_day=last, timezone=zone, since=since, until=until,
        count=sum(s.count for s in stores), value=sum(s.value for s in stores),
        by_store=stores, by_user=users,
    )  # fmt: skip
