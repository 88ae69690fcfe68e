"""What the console's listings pages show: listings with their product, account and the product's stock."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.catalog.models import Product
from core.channels.models import Listing
from core.channels.schemas import ListingOut
from core.channels.services import list_listings, listing_out
from core.connectors.models import ConnectorAccount
from core.db.base import utcnow
from core.inventory.allocation import ALLOCATABLE_KINDS, available_clause
from core.inventory.models import Code

__all__ = [
    "AccountChoice",
    "AccountSync",
    "ListingRow",
    "ListingRows",
    "ProductChoice",
    "account_sync",
    "choices",
    "listing_row",
    "listing_rows",
]


class AccountChoice(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    connector_id: str
    status: str


class ProductChoice(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    sku: str
    name_zh: str
    name_en: str
    face_value: int


class ListingRow(msgspec.Struct, kw_only=True):
    """A listing with its names, and the product's available stock and the quotas all its listings hold."""

    listing: ListingOut
    product_sku: str
    product_name_zh: str
    product_name_en: str
    account_name: str
    connector_id: str
    available: int
    held: int

    @property
    def quota_pct(self) -> int:
        """This listing's quota as a share of the product's available stock (0..100, for the bar)."""
        return min(100, self.listing.quota * 100 // self.available) if self.available else 0

    @property
    def held_pct(self) -> int:
        return min(100, self.held * 100 // self.available) if self.available else 0


class AccountSync(msgspec.Struct, kw_only=True):
    """A channel account's sync state: how many of its listings are synced, waiting, failing, drifting, low."""

    account_id: uuid.UUID
    name: str
    connector_id: str
    status: str
    listings: int
    synced: int
    pending: int
    failing: int
    drifting: int
    low: int
    last_pushed_at: dt.datetime | None


class ListingRows(msgspec.Struct):
    items: list[ListingRow]
    next_cursor: uuid.UUID | None


async def _stock(session: AsyncSession, product_ids: set[uuid.UUID]) -> tuple[dict[uuid.UUID, int], dict[uuid.UUID, int]]:
    if not product_ids:
        return {}, {}
    available = dict((await session.execute(
        select(Code.product_id, func.count()).where(Code.product_id.in_(product_ids), available_clause(utcnow()))
        .group_by(Code.product_id))).all())
    held = dict((await session.execute(
        select(Listing.product_id, func.sum(Listing.quota)).where(Listing.product_id.in_(product_ids))
        .group_by(Listing.product_id))).all())
    return {k: int(v) for k, v in available.items()}, {k: int(v or 0) for k, v in held.items()}


async def _rows(session: AsyncSession, listings: list[ListingOut]) -> list[ListingRow]:
    pids = {li.product_id for li in listings}
    aids = {li.account_id for li in listings}
    products = {p.id: p for p in (await session.execute(select(Product).where(Product.id.in_(pids)))).scalars()}
    accounts = {a.id: a for a in (await session.execute(
        select(ConnectorAccount).where(ConnectorAccount.id.in_(aids)))).scalars()}
    available, held = await _stock(session, pids)
    rows = []
    for li in listings:
        p, a = products[li.product_id], accounts[li.account_id]
        rows.append(ListingRow(listing=li, product_sku=p.sku, product_name_zh=p.name_zh, product_name_en=p.name_en,
                               account_name=a.name, connector_id=a.connector_id,
                               available=available.get(li.product_id, 0), held=held.get(li.product_id, 0)))
    return rows


async def listing_rows(session: AsyncSession, *, account_id: uuid.UUID | None = None,
                       cursor: uuid.UUID | None = None, limit: int = 50) -> ListingRows:
    page = await list_listings(session, account_id=account_id, cursor=cursor, limit=limit)
    return ListingRows(await _rows(session, page.items), page.next_cursor)


async def listing_row(session: AsyncSession, listing: Listing) -> ListingRow:
    return (await _rows(session, [listing_out(listing)]))[0]


async def account_sync(session: AsyncSession) -> list[AccountSync]:
    """Per sales-channel account: its listings by sync state, drift and low-watermark alerts, last push."""
    behind = Listing.version > Listing.pushed_version
    failing = behind & (Listing.push_attempts > 0)
    counts = {r.account_id: r for r in (await session.execute(
        select(Listing.account_id, func.count().label("listings"),
               func.sum(case((behind & ~failing, 1), else_=0)).label("pending"),
               func.sum(case((failing, 1), else_=0)).label("failing"),
               func.sum(case((Listing.drift_since.is_not(None), 1), else_=0)).label("drifting"),
               func.sum(case((Listing.low_since.is_not(None), 1), else_=0)).label("low"),
               func.max(Listing.pushed_at).label("last_pushed_at"))
        .group_by(Listing.account_id))).all()}
    out = []
    for a in (await session.execute(select(ConnectorAccount).where(
            ConnectorAccount.kind == "sales_channel", ConnectorAccount.status != "disconnected")
            .order_by(ConnectorAccount.name))).scalars():
        c = counts.get(a.id)
        n, pending, fails = (int(c.listings), int(c.pending or 0), int(c.failing or 0)) if c else (0, 0, 0)
        out.append(AccountSync(
            account_id=a.id, name=a.name, connector_id=a.connector_id, status=a.status, listings=n,
            synced=n - pending - fails, pending=pending, failing=fails,
            drifting=int(c.drifting or 0) if c else 0, low=int(c.low or 0) if c else 0,
            last_pushed_at=c.last_pushed_at if c else None))
    return out


async def choices(session: AsyncSession) -> tuple[list[AccountChoice], list[ProductChoice]]:
    """The sales-channel accounts and the products a listing can be made of."""
    accounts = [AccountChoice(id=a.id, name=a.name, connector_id=a.connector_id, status=a.status)
                for a in (await session.execute(
                    select(ConnectorAccount).where(ConnectorAccount.kind == "sales_channel",
                                                   ConnectorAccount.status != "disconnected")
                    .order_by(ConnectorAccount.name))).scalars()]
    products = [ProductChoice(id=p.id, sku=p.sku, name_zh=p.name_zh, name_en=p.name_en, face_value=p.face_value)
                for p in (await session.execute(
                    select(Product).where(Product.status == "active", Product.kind.in_(ALLOCATABLE_KINDS))
                    .order_by(Product.sku))).scalars()]
    return accounts, products
