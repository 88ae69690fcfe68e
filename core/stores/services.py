"""Stores (门店): create, change, deactivate, list; resolve the store a redemption names; the clerks'
stores (核销员 ↔ 门店).

A redemption names its store by id, or by code or name (text). While a tenant has no store records the
text is kept as written (free text, as before stores existed); once it has any, the text must match an
active store (``422 unknown_store`` / ``422 store_inactive``).
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.db.base import utcnow
from core.errors import Conflict, FieldError, NotFound, ValidationFailed
from core.stores.models import Store, StoreClerk
from core.stores.schemas import StoreIn, StoreList, StoreOut, StoreUpdate

#: The role whose users only redeem, at the stores they are bound to (``tenants.models.ROLES``).
CLERK_ROLE = "clerk"
_TEXT_FIELDS = ("name", "province", "city", "district", "address", "phone")


def store_out(s: Store) -> StoreOut:
    return StoreOut(
        id=s.id, code=s.code, name=s.name, province=s.province, city=s.city, district=s.district,
        address=s.address, phone=s.phone, active=s.active, created_at=s.created_at, updated_at=s.updated_at,
    )  # fmt: skip


async def list_stores(session: AsyncSession, *, active_only: bool = False) -> list[Store]:
    """The tenant's stores, active first, then by code."""
    q = select(Store).order_by(Store.active.desc(), Store.code)
    if active_only:
        q = q.where(Store.active.is_(True))
    return list((await session.execute(q)).scalars())


async def list_out(session: AsyncSession, *, active_only: bool = False) -> StoreList:
    return StoreList([store_out(s) for s in await list_stores(session, active_only=active_only)])


async def get_store(session: AsyncSession, store_id: uuid.UUID) -> Store:
    """The store, or ``404 store_not_found``."""
    store = (await session.execute(select(Store).where(Store.id == store_id))).scalar_one_or_none()
    if store is None:
        raise NotFound("Store not found", "门店不存在", code="store_not_found")
    return store


def _taken(field: str, value: str) -> Conflict:
    what_en, what_zh = ("code", "编号") if field == "code" else ("name", "名称")
    return Conflict(
        f"Another store already has the {what_en} {value!r}",
        f"已有其他门店使用{what_zh}“{value}”",
        code="store_exists",
        errors=[FieldError(field=field, message="already used", code="taken")],
    )


async def _check_unique(session: AsyncSession, code: str, name: str, other_than: uuid.UUID | None) -> None:
    q = select(Store.code, Store.name).where(or_(Store.code == code, Store.name == name))
    if other_than is not None:
        q = q.where(Store.id != other_than)
    for row in (await session.execute(q)).all():
        raise _taken("code", code) if row.code == code else _taken("name", name)


def _blank(field: str) -> ValidationFailed:
    return ValidationFailed(
        f"The store's {field} cannot be blank",
        "门店编号不能为空" if field == "code" else "门店名称不能为空",
        errors=[FieldError(field=field, message="blank", code="required")],
    )


def _clean(field: str, value: str) -> str:
    cleaned = value.strip().upper() if field == "code" else " ".join(value.split())
    if field in ("code", "name") and not cleaned:
        raise _blank(field)
    return cleaned


async def _flush(session: AsyncSession, store: Store) -> None:
    try:
        await session.flush()
    except IntegrityError:  # a concurrent create or rename took the code or name first
        raise _taken("code", store.code) from None


async def create_store(session: AsyncSession, data: StoreIn) -> Store:
    """Create a store; ``409 store_exists`` when its code or name is taken."""
    values = {f: _clean(f, getattr(data, f)) for f in ("code", *_TEXT_FIELDS)}
    await _check_unique(session, values["code"], values["name"], None)
    store = Store(**values, active=True)
    session.add(store)
    await _flush(session, store)
    record(session, "store.created", "store", store.id, {"code": store.code, "name": store.name})
    return store


async def update_store(session: AsyncSession, store_id: uuid.UUID, data: StoreUpdate) -> Store:
    """Change the fields sent (``active: false`` deactivates); the same uniqueness rules as creation."""
    store = await get_store(session, store_id)
    changed: dict[str, Any] = {}
    for f in ("code", *_TEXT_FIELDS):
        value = getattr(data, f)
        if value is not msgspec.UNSET and (cleaned := _clean(f, value)) != getattr(store, f):
            changed[f] = cleaned
    await _check_unique(session, changed.get("code", store.code), changed.get("name", store.name), store.id)
    if data.active is not msgspec.UNSET and data.active != store.active:
        changed["active"] = data.active
    if changed:
        for f, value in changed.items():
            setattr(store, f, value)
        store.updated_at = utcnow()
        await _flush(session, store)
        record(session, "store.updated", "store", store.id, changed)
    return store


async def set_active(session: AsyncSession, store_id: uuid.UUID, active: bool) -> Store:
    """Deactivate (停用) or reactivate (启用) a store: a deactivated store takes no more redemptions."""
    return await update_store(session, store_id, StoreUpdate(active=active))


def _unknown(text: str) -> ValidationFailed:
    return ValidationFailed(
        f"No store with the code or name {text!r}; pick one of the tenant's stores",
        f"没有编号或名称为“{text}”的门店，请选择已有门店",
        code="unknown_store",
        errors=[FieldError(field="store", message="unknown store", code="unknown_store")],
    )


def _inactive(store: Store) -> ValidationFailed:
    return ValidationFailed(
        f"The store {store.name} is deactivated",
        f"门店“{store.name}”已停用",
        code="store_inactive",
        errors=[FieldError(field="store", message="store deactivated", code="store_inactive")],
    )


async def resolve_store(session: AsyncSession, store_id: uuid.UUID | None, text: str) -> Store | None:
    """The active store a redemption names: by id, else by code (any case) or name.

    ``None`` when nothing is named, or when text is named and the tenant has no stores at all (free text
    stays allowed until stores are set up). Otherwise ``422 unknown_store`` / ``422 store_inactive``.
    """
    text = text.strip()
    if store_id is not None:
        store = (await session.execute(select(Store).where(Store.id == store_id))).scalar_one_or_none()
        if store is None:
            raise _unknown(str(store_id))
    elif text:
        # one query: the matching store first, else any store (none at all: the tenant has no stores yet)
        matched = or_(Store.code == text.upper(), Store.name == " ".join(text.split()))
        q = select(Store, matched.label("matched")).order_by(matched.desc(), Store.code).limit(1)
        row = (await session.execute(q)).first()
        if row is None:
            return None
        if not row.matched:
            raise _unknown(text)
        store = row.Store
    else:
        return None
    if not store.active:
        raise _inactive(store)
    return store


async def stores_of_user(session: AsyncSession, user_id: uuid.UUID) -> list[Store]:
    """The stores a clerk is bound to (active or not), by code."""
    q = (
        select(Store)
        .join(StoreClerk, (StoreClerk.store_id == Store.id) & (StoreClerk.tenant_id == Store.tenant_id))
        .where(StoreClerk.user_id == user_id)
        .order_by(Store.code)
    )
    return list((await session.execute(q)).scalars())


async def clerk_stores(session: AsyncSession) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Every user's bound stores (user id → store ids)."""
    bound: dict[uuid.UUID, list[uuid.UUID]] = {}
    for user_id, store_id in (await session.execute(select(StoreClerk.user_id, StoreClerk.store_id))).all():
        bound.setdefault(user_id, []).append(store_id)
    return bound


async def set_user_stores(
    session: AsyncSession, user_id: uuid.UUID, store_ids: list[uuid.UUID]
) -> list[Store]:
    """Bind a clerk to exactly these stores (replacing the previous ones); audited as ``user.stores_set``."""
    wanted = set(store_ids)
    found = (
        list((await session.execute(select(Store).where(Store.id.in_(wanted)))).scalars()) if wanted else []
    )
    if len(found) != len(wanted):
        raise ValidationFailed(
            "One of the chosen stores does not exist",
            "所选门店中有不存在的门店",
            code="unknown_store",
            errors=[FieldError(field="store_ids", message="unknown store", code="unknown_store")],
        )
    await session.execute(delete(StoreClerk).where(StoreClerk.user_id == user_id))
    session.add_all(StoreClerk(user_id=user_id, store_id=s.id) for s in found)
    await session.flush()
    record(session, "user.stores_set", "user", user_id, {"stores": sorted(s.code for s in found)})
    return sorted(found, key=lambda s: s.code)
