"""Where a redemption happens: the store it names (a record of :mod:`core.stores`, or free text while the
tenant has no stores), and for a clerk (核销员) one of the stores the clerk is bound to."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import FieldError, Forbidden, ValidationFailed
from core.redemption.schemas import RedeemIn
from core.stores.services import resolve_store, stores_of_user


async def resolve_place(
    session: AsyncSession, data: RedeemIn, clerk: uuid.UUID | None
) -> tuple[uuid.UUID | None, str]:
    """The store record (or ``None``) and the store text to write.

    A clerk's redemption is at one of the clerk's active stores: the only one when none is named
    (``422 store_required`` when the clerk has several, ``403 clerk_without_store`` when none), and
    ``403 store_not_yours`` for another store.
    """
    store = await resolve_store(session, data.store_id, data.store)
    if clerk is not None:  # the user id of a clerk (核销员) redeeming
        mine = [s for s in await stores_of_user(session, clerk) if s.active]
        if not mine:
            raise Forbidden(
                "You are not assigned to any store yet; ask the owner to assign one",
                "您尚未绑定门店，请联系店主为您分配门店",
                code="clerk_without_store",
            )
        if store is None and len(mine) == 1:
            store = mine[0]
        elif store is None:
            raise ValidationFailed(
                "Choose the store you are redeeming at",
                "请选择核销门店",
                code="store_required",
                errors=[FieldError(field="store", message="required", code="required")],
            )
        elif store.id not in {s.id for s in mine}:
            raise Forbidden(
                f"You cannot redeem at {store.name}: it is not one of your stores",
                f"您不能在“{store.name}”核销：该门店未分配给您",
                code="store_not_yours",
            )
    if store is None:
        return None, data.store.strip()
    return store.id, store.name
