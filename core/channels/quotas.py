"""Listing quotas: how many units each channel listing may still sell, never more in sum than the stock.

The rule: for every product, the quotas of its listings sum to at most its available stock.

* A sale takes quota with one guarded statement (:func:`take_quota`), in the same transaction that
  allocates the codes; both shrink by the same number, so the rule holds without a lock, and concurrent
  orders on several channels can never sell more than a listing's quota.
* Everything else that sets quotas (a listing created or changed, quota given back, stock that arrived or
  went) runs under the product's lock (:func:`lock_product`): one transaction at a time recomputes the
  product's quotas from its available stock (:func:`rebalance`), so concurrent changes cannot together
  exceed it.
* A ``fixed`` quota is a number of units the listing may sell; it is only shrunk when the stock falls below
  the sum. A ``share`` quota is ``quota_value`` basis points of the available stock, recomputed as the
  stock changes (it grows back when stock arrives). When the stock cannot cover every quota, share quotas
  shrink first, then fixed ones, newest first.

Every change that must reach the channel bumps the listing's ``version`` and asks for a coalesced stock
push of its account (:func:`core.channels.sync.request_push`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.catalog.models import Product
from core.channels.models import Listing
from core.channels.sync import request_push
from core.db.base import utcnow
from core.inventory.allocation import available_clause, count_available
from core.inventory.models import Code

__all__ = [
    "BP",
    "QuotaPlan",
    "available_of",
    "give_back_quota",
    "lock_product",
    "plan_quotas",
    "rebalance",
    "take_quota",
]

#: Basis points in one whole (a ``share`` quota of 2500 is a quarter of the available stock).
BP = 10_000


async def take_quota(session: AsyncSession, listing_id: uuid.UUID, quantity: int, *, push: bool = True) -> bool:
    """Take ``quantity`` units of an active listing's quota for a sale; ``False`` when it cannot cover them
    (or the listing is paused or not this tenant's). Atomic: ``UPDATE … WHERE quota >= n AND status =
    'active'``, so concurrent orders never take more than the quota. Call it in the transaction that
    allocates the codes: when that fails and rolls back, the quota comes back with it.

    ``push=False``: the caller has already called :func:`core.channels.sync.request_push` for the listing's
    account in this transaction (before taking the quota, so the row lock concurrent sales queue on is not
    held across the push request's two statements)."""
    if quantity < 1:
        raise ValueError("quantity must be at least 1")
    row = (await session.execute(
        update(Listing)
        .where(Listing.id == listing_id, Listing.status == "active", Listing.quota >= quantity)
        .values(quota=Listing.quota - quantity, sold=Listing.sold + quantity, version=Listing.version + 1,
                updated_at=utcnow())
        .returning(Listing.account_id),
        execution_options={"synchronize_session": False},
    )).first()
    if row is None:
        return False
    if push:
        await request_push(session, row.account_id)
    return True


async def give_back_quota(session: AsyncSession, listing_id: uuid.UUID, quantity: int) -> int:
    """Give ``quantity`` units back to a listing after a cancellation or refund; returns how many it got back.

    Call it after the codes went back to stock. Codes that were voided instead (already revealed to the
    buyer) do not come back to stock, so the quota cannot grow by them: what is given back is bounded by the
    stock no other listing holds (and a fixed quota by its number). A listing of another tenant gets nothing.
    """
    if quantity < 1:
        raise ValueError("quantity must be at least 1")
    listing = (await session.execute(select(Listing).where(Listing.id == listing_id))).scalar_one_or_none()
    if listing is None:
        return 0
    await lock_product(session, listing.product_id)
    await session.refresh(listing)
    listing.sold = max(0, listing.sold - quantity)
    before = listing.quota
    if listing.quota_kind == "fixed":
        available = await count_available(session, listing.product_id)
        held = await _held(session, listing.product_id)
        room = max(0, min(available - held, listing.quota_value - listing.quota))
        listing.quota += min(quantity, room)
    await rebalance(session, listing.product_id, locked=True)
    await session.refresh(listing)
    return max(0, listing.quota - before)


async def lock_product(session: AsyncSession, product_id: uuid.UUID) -> None:
    """Hold the product's row lock until the transaction ends: quota changes of one product run one at a time.

    A no-op write, so that it also takes SQLite's write lock before anything is read (PostgreSQL locks the
    row). Another tenant's product matches nothing and locks nothing.
    """
    await session.execute(
        update(Product).where(Product.id == product_id).values(status=Product.status),
        execution_options={"synchronize_session": False},
    )


async def available_of(session: AsyncSession, product_ids: set[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The available stock of each of these products, in one grouped query (absent: none)."""
    if not product_ids:
        return {}
    return {pid: int(n) for pid, n in (await session.execute(
        select(Code.product_id, func.count())
        .where(Code.product_id.in_(list(product_ids)), available_clause(utcnow())).group_by(Code.product_id)
    )).all()}


async def _held(session: AsyncSession, product_id: uuid.UUID) -> int:
    quotas = (await session.execute(select(Listing.quota).where(Listing.product_id == product_id))).scalars()
    return sum(quotas)


@dataclass(frozen=True)
class QuotaPlan:
    """What :func:`plan_quotas` decided: each listing's new quota, and the stock it was decided against."""

    available: int
    quotas: dict[uuid.UUID, int]

    @property
    def total(self) -> int:
        return sum(self.quotas.values())


def plan_quotas(available: int, listings: Sequence[Any]) -> QuotaPlan:
    """Each listing's quota for ``available`` units of stock (pure; ``listings`` in creation order).

    Fixed quotas keep their number (never above ``quota_value``) unless the stock is short, when the newest
    shrink first. Share quotas get their share of the available stock, bounded by what the fixed ones leave;
    when the shares together ask for more than that, each gets its proportion of what is left.
    """
    available = max(0, available)
    quotas: dict[uuid.UUID, int] = {}
    fixed = [li for li in listings if li.quota_kind == "fixed"]
    shares = [li for li in listings if li.quota_kind == "share"]
    room = available
    for li in fixed:  # oldest first keep theirs; the newest shrink when the stock is short
        quotas[li.id] = max(0, min(li.quota, li.quota_value, room))
        room -= quotas[li.id]
    wanted = {li.id: available * max(0, li.quota_value) // BP for li in shares}
    asked = sum(wanted.values())
    if asked <= room:
        quotas.update(wanted)
    else:
        total_bp = sum(max(0, li.quota_value) for li in shares) or 1
        for li in shares:
            quotas[li.id] = min(wanted[li.id], room * max(0, li.quota_value) // total_bp)
    return QuotaPlan(available, quotas)


async def rebalance(session: AsyncSession, product_id: uuid.UUID, *, locked: bool = False) -> QuotaPlan:
    """Recompute the quotas of a product's listings from its available stock; write and push what changed.

    Runs under the product's lock (taken here unless the caller holds it: ``locked=True``).
    """
    if not locked:
        await lock_product(session, product_id)
    listings = list((await session.execute(
        select(Listing).where(Listing.product_id == product_id).order_by(Listing.id)
    )).scalars())
    if not listings:
        return QuotaPlan(0, {})
    available = await count_available(session, product_id)
    plan = plan_quotas(available, listings)
    now = utcnow()
    accounts: set[uuid.UUID] = set()
    for li in listings:
        new = plan.quotas[li.id]
        if new != li.quota:
            li.quota, li.version, li.updated_at = new, li.version + 1, now
            accounts.add(li.account_id)
    await session.flush()
    for account_id in sorted(accounts):
        await request_push(session, account_id)
    return plan
