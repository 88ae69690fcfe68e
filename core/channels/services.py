"""Listings: create, change, pause and resume; prices by rule with their history; reading them back.

Shared by the API, the console and the jobs. Every change that the channel must see bumps ``version`` and
asks for a coalesced push of the account (:mod:`core.channels.sync`); every change of the price is recorded
in :class:`~core.channels.models.ListingPriceChange`; quotas go through :mod:`core.channels.quotas`.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.catalog.models import Product
from core.catalog.services import find_product
from core.channels.models import Listing, ListingPriceChange
from core.channels.pricing import PriceInputs, check_rule, compute_price, rule_from_json, rule_to_json
from core.channels.quotas import BP, lock_product, rebalance
from core.channels.schemas import (
    ListingIn,
    ListingOut,
    ListingPage,
    ListingPatch,
    PriceChangeOut,
    PriceChangePage,
    PriceRule,
    ProductQuotaOut,
    QuotaIn,
)
from core.channels.sync import request_push
from core.connectors.models import ConnectorAccount
from core.db.base import utcnow
from core.db.paging import keyset_page
from core.db.session import get_scoped
from core.errors import Conflict, FieldError, NotFound, ValidationFailed
from core.inventory.allocation import ALLOCATABLE_KINDS, available_clause, count_available
from core.inventory.models import Code

__all__ = [
    "create_listing",
    "find_listing",
    "get_listing",
    "list_listings",
    "listing_by_sku",
    "listing_out",
    "pause_listing",
    "price_history",
    "product_quota",
    "reprice",
    "resume_listing",
    "stock_changed",
    "update_listing",
]


def _sync_state(li: Listing) -> Literal["synced", "pending", "failing"]:
    if li.pushed_version >= li.version:
        return "synced"
    return "failing" if li.push_attempts > 0 and li.push_error else "pending"


def listing_out(li: Listing) -> ListingOut:
    return ListingOut(
        id=li.id, account_id=li.account_id, product_id=li.product_id, sku=li.sku, title=li.title,
        status=li.status, price_fen=li.price_fen, price_rule=dict(li.price_rule), quota_kind=li.quota_kind,
        quota_value=li.quota_value, quota=li.quota, sold=li.sold, low_watermark_bp=li.low_watermark_bp,
        split_rule=dict(li.split_rule), sync=_sync_state(li),
        version=li.version, pushed_version=li.pushed_version, pushed_at=li.pushed_at, push_error=li.push_error,
        push_attempts=li.push_attempts, channel_available=li.channel_available, drift=li.drift_since is not None,
        low=li.low_since is not None, created_at=li.created_at, updated_at=li.updated_at,
    )


async def find_listing(session: AsyncSession, listing_id: uuid.UUID, *, lock: bool = False) -> Listing:
    """The tenant's listing; 404 ``listing_not_found`` otherwise (also for another tenant's id)."""
    q = select(Listing).where(Listing.id == listing_id)
    if lock:
        q = q.with_for_update()
    listing = (await session.execute(q)).scalar_one_or_none()
    if listing is None:
        raise NotFound("Listing not found", "渠道商品不存在", code="listing_not_found")
    return listing


async def listing_by_sku(session: AsyncSession, account_id: uuid.UUID, sku: str) -> Listing | None:
    """The tenant's listing of ``sku`` on the channel account (how an order line finds its listing), or None."""
    return (await session.execute(
        select(Listing).where(Listing.account_id == account_id, Listing.sku == sku)
    )).scalar_one_or_none()


async def get_listing(session: AsyncSession, listing_id: uuid.UUID) -> ListingOut:
    return listing_out(await find_listing(session, listing_id))


async def _channel_account(session: AsyncSession, account_id: uuid.UUID) -> ConnectorAccount:
    account = await get_scoped(session, ConnectorAccount, account_id)
    if account is None or account.status == "disconnected":
        raise NotFound("Channel account not found", "渠道账号不存在", code="account_not_found",
                       errors=[FieldError(field="account_id", message="unknown account", code="not_found")])
    if account.kind != "sales_channel":
        raise ValidationFailed("This connector account is not a sales channel", "该连接器账号不是销售渠道",
                               code="not_a_channel",
                               errors=[FieldError(field="account_id", message="not a sales channel",
                                                  code="not_a_channel")])
    return account


async def _listable_product(session: AsyncSession, product_id: uuid.UUID) -> Product:
    product = await find_product(session, product_id)
    if product.kind not in ALLOCATABLE_KINDS:
        raise ValidationFailed(f"Products of kind {product.kind!r} cannot be listed on a channel",
                               f"类型为 {product.kind!r} 的商品不能上架到渠道", code="product_not_listable")
    if product.status != "active":
        raise Conflict("This product is not active", "该权益商品未上架", code="product_inactive")
    return product


def _quota_refused(en: str, zh: str, extra: dict[str, Any]) -> Conflict:
    return Conflict(en, zh, code="quota_above_stock", extra=extra,
                    errors=[FieldError(field="quota.value", message=en, code="quota_above_stock")])


async def _check_quota(session: AsyncSession, product_id: uuid.UUID, quota: QuotaIn,
                       listing: Listing | None) -> None:
    """Refuse a quota the stock cannot cover (call under the product's lock)."""
    others = [li for li in (await session.execute(
        select(Listing).where(Listing.product_id == product_id))).scalars() if listing is None or li.id != listing.id]
    if quota.kind == "share":
        if quota.value > BP:
            raise ValidationFailed("A share quota is at most 10000 basis points (100%)",
                                   "按比例配额最多为 10000 个基点（100%）", code="share_above_whole",
                                   errors=[FieldError(field="quota.value", message="0..10000",
                                                      code="out_of_range")])
        shares = sum(li.quota_value for li in others if li.quota_kind == "share")
        if shares + quota.value > BP:
            raise _quota_refused(
                f"The product's share quotas would be {shares + quota.value} basis points, above 10000",
                f"该商品的按比例配额合计将达 {shares + quota.value} 个基点，超过 10000",
                {"shares_bp": shares, "requested_bp": quota.value})
        return
    available = await count_available(session, product_id)
    held = sum(li.quota for li in others if li.quota_kind == "fixed")
    room = available - held
    if quota.value > room:
        raise _quota_refused(
            f"A quota of {quota.value} is above the stock not held by other listings ({room} of {available})",
            f"配额 {quota.value} 超过可用库存（其他渠道占用后剩余 {room}，共 {available}）",
            {"requested": quota.value, "room": room, "available": available})


async def _price_inputs(session: AsyncSession, product: Product) -> PriceInputs:
    return (await _price_inputs_of(session, {product.id: product.face_value}))[product.id]


async def _price_inputs_of(session: AsyncSession, face_values: dict[uuid.UUID, int]) -> dict[uuid.UUID, PriceInputs]:
    """What the price rules of these products look at, in one query (face value, stock, first expiry)."""
    now = utcnow()
    stock = {pid: (int(n or 0), first) for pid, n, first in (await session.execute(
        select(Code.product_id, func.count(), func.min(Code.expires_at))
        .where(Code.product_id.in_(list(face_values)), available_clause(now)).group_by(Code.product_id)
    )).all()}
    return {pid: PriceInputs(face, *stock.get(pid, (0, None)), now) for pid, face in face_values.items()}


def _set_price(session: AsyncSession, li: Listing, price: int, reason: str, detail: str,
               user_id: uuid.UUID | None) -> bool:
    if price == li.price_fen:
        return False
    session.add(ListingPriceChange(listing_id=li.id, old_price_fen=li.price_fen,
                                   new_price_fen=price, reason=reason, detail=detail[:500], user_id=user_id))
    li.price_fen = price
    return True


async def create_listing(session: AsyncSession, data: ListingIn, *, user_id: uuid.UUID | None = None) -> ListingOut:
    """List a product on a channel account, with its price rule and quota (refused above the stock)."""
    await _channel_account(session, data.account_id)
    product = await _listable_product(session, data.product_id)
    rule = check_rule(data.price_rule, product.face_value)
    exists = await session.scalar(select(Listing.id).where(Listing.account_id == data.account_id,
                                                           Listing.sku == data.sku))
    if exists is not None:
        raise Conflict(f"The account already lists SKU {data.sku!r}", f"该渠道账号已有 SKU {data.sku!r}",
                       code="listing_sku_taken")
    await lock_product(session, product.id)
    await _check_quota(session, product.id, data.quota, None)
    priced = compute_price(rule, await _price_inputs(session, product))
    now = utcnow()
    li = Listing(account_id=data.account_id, product_id=product.id, sku=data.sku, title=data.title or product.name_zh,
                 status="active", price_rule=rule_to_json(rule), price_fen=priced.price_fen,
                 quota_kind=data.quota.kind, quota_value=data.quota.value,
                 quota=data.quota.value if data.quota.kind == "fixed" else 0, sold=0,
                 low_watermark_bp=data.low_watermark_bp, split_rule=check_split_rule(data.split_rule), version=1,
                 pushed_version=0, push_error="", push_attempts=0, updated_at=now)
    session.add(li)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"The account already lists SKU {data.sku!r}", f"该渠道账号已有 SKU {data.sku!r}",
                       code="listing_sku_taken") from None
    session.add(ListingPriceChange(listing_id=li.id, old_price_fen=None, new_price_fen=priced.price_fen,
                                   reason="manual", detail=priced.detail[:500], user_id=user_id))
    await rebalance(session, product.id, locked=True)
    await request_push(session, li.account_id)
    record(session, "listing.created", "listing", li.id,
           {"account_id": str(li.account_id), "product_id": str(product.id), "sku": li.sku,
            "price_fen": li.price_fen, "quota_kind": li.quota_kind, "quota_value": li.quota_value})
    await session.refresh(li)
    return listing_out(li)


def check_split_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A listing's own split (``{"channel_bp": N, "platform_bp": M}``, integers 0..10000 summing to at most
    10000, or ``{}``): read by :mod:`core.splits.rules` as the listing's rule while it has no rule version.
    ``422 bad_split_rule`` otherwise (richer rules: ``/api/v1/split-rules`` with subject ``listing:<id>``)."""
    known = ("channel_bp", "platform_bp")
    values: list[Any] = [rule[k] for k in known if k in rule]
    if set(rule) - set(known) or any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= BP
                                     for v in values) or sum(values) > BP:
        raise ValidationFailed(
            "split_rule takes channel_bp and platform_bp, whole basis points 0..10000 summing to at most 10000",
            "split_rule 只接受 channel_bp 和 platform_bp，为 0 到 10000 的整数基点，合计不超过 10000",
            code="bad_split_rule", errors=[FieldError(field="split_rule", message="channel_bp/platform_bp",
                                                      code="bad_split_rule")])
    return dict(rule)


async def update_listing(session: AsyncSession, listing_id: uuid.UUID, patch: ListingPatch, *,
                         user_id: uuid.UUID | None = None) -> ListingOut:
    """Change a listing's title, price rule, quota, low watermark or split rule."""
    li = await find_listing(session, listing_id)
    product = await find_product(session, li.product_id)
    changes: dict[str, Any] = {}
    if patch.title is not None and patch.title != li.title:
        li.title = changes["title"] = patch.title
    if patch.low_watermark_bp is not None:
        li.low_watermark_bp = changes["low_watermark_bp"] = patch.low_watermark_bp
    if patch.split_rule is not None:
        li.split_rule = changes["split_rule"] = check_split_rule(patch.split_rule)
    if patch.price_rule is not None:
        rule = check_rule(patch.price_rule, product.face_value)
        li.price_rule = changes["price_rule"] = rule_to_json(rule)
        priced = compute_price(rule, await _price_inputs(session, product))
        _set_price(session, li, priced.price_fen, "manual", priced.detail, user_id)
    if patch.quota is not None:
        await lock_product(session, li.product_id)
        await session.refresh(li, attribute_names=["quota", "sold", "version"])
        await _check_quota(session, li.product_id, patch.quota, li)
        li.quota_kind, li.quota_value = patch.quota.kind, patch.quota.value
        if patch.quota.kind == "fixed":
            li.quota = patch.quota.value
        changes["quota"] = {"kind": patch.quota.kind, "value": patch.quota.value}
    li.version += 1
    li.updated_at = utcnow()
    await session.flush()
    if patch.quota is not None:
        await rebalance(session, li.product_id, locked=True)
    await request_push(session, li.account_id)
    record(session, "listing.updated", "listing", li.id, {"changes": list(changes)})
    await session.refresh(li)
    return listing_out(li)


async def _set_status(session: AsyncSession, listing_id: uuid.UUID, status: str) -> ListingOut:
    li = await find_listing(session, listing_id)
    if li.status != status:
        li.status, li.version, li.updated_at = status, li.version + 1, utcnow()
        await session.flush()
        await request_push(session, li.account_id)
        record(session, "listing.paused" if status == "paused" else "listing.resumed", "listing", li.id, {})
    return listing_out(li)


async def pause_listing(session: AsyncSession, listing_id: uuid.UUID) -> ListingOut:
    """Stop selling: the channel is told the listing is inactive; orders for it are refused (no quota)."""
    return await _set_status(session, listing_id, "paused")


async def resume_listing(session: AsyncSession, listing_id: uuid.UUID) -> ListingOut:
    return await _set_status(session, listing_id, "active")


async def list_listings(session: AsyncSession, *, account_id: uuid.UUID | None = None,
                        product_id: uuid.UUID | None = None, status: str | None = None,
                        cursor: uuid.UUID | None = None, limit: int = 50) -> ListingPage:
    q = select(Listing)
    if account_id is not None:
        q = q.where(Listing.account_id == account_id)
    if product_id is not None:
        q = q.where(Listing.product_id == product_id)
    if status is not None:
        q = q.where(Listing.status == status)
    page = await keyset_page(session, q, Listing.id, cursor=cursor, limit=max(1, min(limit, 200)))
    return ListingPage([listing_out(li) for li in page.items], page.next_cursor)


async def price_history(session: AsyncSession, listing_id: uuid.UUID, *, cursor: uuid.UUID | None = None,
                        limit: int = 50) -> PriceChangePage:
    """A listing's price changes, newest first."""
    await find_listing(session, listing_id)
    q = select(ListingPriceChange).where(ListingPriceChange.listing_id == listing_id)
    page = await keyset_page(session, q, ListingPriceChange.id, cursor=cursor, limit=max(1, min(limit, 200)))
    return PriceChangePage([
        PriceChangeOut(id=c.id, listing_id=c.listing_id, old_price_fen=c.old_price_fen,
                       new_price_fen=c.new_price_fen, reason=c.reason, detail=c.detail, user_id=c.user_id,
                       created_at=c.created_at)
        for c in page.items
    ], page.next_cursor)


async def product_quota(session: AsyncSession, product_id: uuid.UUID) -> ProductQuotaOut:
    await find_product(session, product_id)
    available = await count_available(session, product_id)
    held = await session.scalar(select(func.coalesce(func.sum(Listing.quota), 0))
                                .where(Listing.product_id == product_id))
    return ProductQuotaOut(product_id=product_id, available=available, held=int(held or 0))


async def reprice(session: AsyncSession, product_id: uuid.UUID | None = None) -> int:
    """Recompute the price of every listing (of one product) by its rule; record and push what changed.

    Expiry and stock-pressure steps move as time passes and stock changes; returns how many prices changed.
    """
    q = select(Listing)
    if product_id is not None:
        q = q.where(Listing.product_id == product_id)
    listings = list((await session.execute(q.order_by(Listing.product_id, Listing.id))).scalars())
    faces = dict((await session.execute(
        select(Product.id, Product.face_value).where(Product.id.in_({li.product_id for li in listings}))
    )).all())
    inputs = await _price_inputs_of(session, faces) if faces else {}
    changed = 0
    accounts: set[uuid.UUID] = set()
    for li in listings:
        rule: PriceRule = rule_from_json(li.price_rule)
        priced = compute_price(rule, inputs[li.product_id])
        if _set_price(session, li, priced.price_fen, priced.reason, priced.detail, None):
            li.version, li.updated_at = li.version + 1, utcnow()
            accounts.add(li.account_id)
            changed += 1
    await session.flush()
    for account_id in sorted(accounts):
        await request_push(session, account_id)
    return changed


async def stock_changed(session: AsyncSession, product_id: uuid.UUID) -> None:
    """The product's available stock changed: resize its quotas, and reprice listings whose rule looks at
    the stock (pressure steps) or the expiry. A product without listings costs one query."""
    has = await session.scalar(select(Listing.id).where(Listing.product_id == product_id).limit(1))
    if has is None:
        return
    await rebalance(session, product_id)
    await reprice(session, product_id)

