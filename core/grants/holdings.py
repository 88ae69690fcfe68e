"""What a member holds, as the console's member page shows it: the units held now, each with its code's
masked number and its product, and the member's latest grants with their products."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.catalog.models import Product
from core.catalog.services import find_products
from core.grants.models import Grant, GrantItem
from core.grants.services import items_of_member, list_grants
from core.inventory.models import Code
from core.inventory.vault import masked


@dataclass(frozen=True)
class HeldCode:
    """One unit the member holds: the grant item, its code's masked number, its product."""

    item: GrantItem
    masked: str
    product: Product | None


@dataclass(frozen=True)
class MemberHoldings:
    """The member's held units (soonest-expiring first), latest grants (newest first) and their products."""

    held: list[HeldCode]
    grants: list[Grant]
    products: dict[uuid.UUID, Product]


async def member_holdings(session: AsyncSession, member_id: uuid.UUID, *, grant_limit: int) -> MemberHoldings:
    """The units ``member_id`` holds now and their latest ``grant_limit`` grants, with the products of both."""
    items = await items_of_member(session, member_id)
    code_ids = [i.code_id for i in items]
    codes = (
        {c.id: c for c in (await session.execute(select(Code).where(Code.id.in_(code_ids)))).scalars()}
        if code_ids
        else {}
    )
    grants = (await list_grants(session, member_id=member_id, limit=grant_limit))[:grant_limit]
    products = await find_products(
        session, {c.product_id for c in codes.values()} | {g.product_id for g in grants}
    )
    held = [
        HeldCode(
            item=i, masked=masked(codes[i.code_id].last4), product=products.get(codes[i.code_id].product_id)
        )
        for i in items
    ]
    return MemberHoldings(held=held, grants=grants, products=products)
