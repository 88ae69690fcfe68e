"""Catalog services: create, change, read and list products (and bundles), with every catalog rule.

Rules held here (so the API, the console and the CLI answer alike):
- ``kind`` in :data:`PRODUCT_KINDS` and fixed at creation; code kinds have a ``code_format``, bundles none.
- A zh-CN name is required, the English one optional. Face value is integer fen ≥ 0 with an ISO currency.
- Validity: ``fixed_date`` needs a future ``validity_date``; ``days_after_issue`` needs ``validity_days``
  1..3650; ``batch_expiry`` needs neither.
- Status moves active ⇄ inactive, either → archived, archived → inactive.
- Tags: at most 20, each at most 30 characters. ``reusable_code`` needs ``max_uses`` ≥ 2.
- Low stock by an absolute threshold or by days of cover (not both); ``near_expiry_days`` 1..365.
- Bundles: items are other (non-bundle, non-archived) products of the tenant, quantity 1..100, no
  duplicates, and at least two items or one item with quantity ≥ 2.
- Code kinds carry card number / PIN rules (lengths 1..128, min ≤ max, charset digits / alnum / crockford /
  printable; defaults 4–64 printable, see :mod:`core.catalog.rules`); bundles none.
- SKU unique per tenant (409 ``sku_taken``). Every create and update appends to the audit chain.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec
from sqlalchemy import delete, event, exists, func, literal, or_, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, object_session

from core.audit.services import record
from core.catalog.models import (
    CODE_FORMATS,
    PRODUCT_KINDS,
    PRODUCT_STATUSES,
    PROVENANCES,
    VALIDITY_KINDS,
    BundleItem,
    Product,
)
from core.catalog.rules import (
    CHARSETS,
    DEFAULT_CHARSET,
    DEFAULT_MAX_LENGTH,
    DEFAULT_MIN_LENGTH,
    LENGTH_CEILING,
    LENGTH_FLOOR,
    RULE_FIELDS,
)
from core.catalog.schemas import (
    BundleItemIn,
    BundleItemOut,
    ProductCreate,
    ProductFilter,
    ProductOut,
    ProductPage,
    ProductUpdate,
)
from core.db.base import utcnow
from core.db.context import current_tenant, require_tenant
from core.db.paging import keyset_page
from core.db.session import KaquanSession
from core.domains import extensions
from core.errors import Conflict, FieldError, NotFound, ValidationFailed
from core.validation import check_currency

CODE_KINDS = ("code", "reusable_code", "stored_value")
"""Kinds that hold codes of their own (and so have a code format and stock)."""
STATUS_TRANSITIONS: dict[str, frozenset[str]] = {
    "active": frozenset({"inactive", "archived"}),
    "inactive": frozenset({"active", "archived"}),
    "archived": frozenset({"inactive"}),
}
#: A check whether a product holds codes (in any state). Its code format is fixed once it does.
HoldsCodes = Callable[[AsyncSession, uuid.UUID], Awaitable[bool]]
#: The extension point of those checks: the domains that store codes (``core.inventory``) provide one in
#: their ``plugin.py``; the catalog asks them rather than importing those domains, which import the catalog.
HOLDS_CODES = "catalog.holds_codes"
SKU_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
MAX_FACE_VALUE = 10**12
MAX_TAGS, MAX_TAG_LENGTH = 20, 30
MAX_BUNDLE_ITEMS, MAX_ITEM_QUANTITY = 50, 100
MAX_USES = 1_000_000
MAX_PAGE = 200
_TEXT_LIMITS = {"name_zh": 200, "name_en": 200, "brand": 100, "category": 100, "usage_rules": 5000}
_FIELDS = (
    "sku", "kind", "code_format", "name_zh", "name_en", "brand", "category", "face_value", "currency",
    "validity_kind", "validity_date", "validity_days", "usage_rules", "provenance", "status", "tags",
    "max_uses", "low_stock_threshold", "low_stock_days_cover", "near_expiry_days", *RULE_FIELDS,
)
_RULE_DEFAULTS: dict[str, Any] = {
    "code_min_length": DEFAULT_MIN_LENGTH, "code_max_length": DEFAULT_MAX_LENGTH, "code_charset": DEFAULT_CHARSET,
    "pin_min_length": DEFAULT_MIN_LENGTH, "pin_max_length": DEFAULT_MAX_LENGTH, "pin_charset": DEFAULT_CHARSET,
}
_VALIDITY_FIELDS = {"fixed_date": "validity_date", "days_after_issue": "validity_days"}


class _Errors:
    """Collects field errors so one answer lists every problem."""

    def __init__(self) -> None:
        self.items: list[FieldError] = []
        self.first: tuple[str, str] | None = None

    def add(self, field: str, code: str, en: str, zh: str) -> None:
        self.items.append(FieldError(field=field, message=en, code=code))
        if self.first is None:
            self.first = (en, zh)

    def extend(self, exc: ValidationFailed) -> None:
        self.items.extend(exc.errors)
        if self.first is None:
            self.first = (exc.en, exc.zh)

    def raise_if_any(self) -> None:
        if not self.items or self.first is None:
            return
        en, zh = self.first
        if len(self.items) > 1:
            en += f" (and {len(self.items) - 1} more problem(s))"
            zh += f"（另有 {len(self.items) - 1} 处问题）"
        raise ValidationFailed(en, zh, errors=self.items)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_range(errs: _Errors, v: dict[str, Any], field: str, lo: int, hi: int, *, required: bool) -> None:
    value = v[field]
    if value is None:
        if required:
            errs.add(field, "required", f"{field} is required", f"{field} 为必填项")
        return
    if not _is_int(value) or not lo <= value <= hi:
        errs.add(field, "out_of_range", f"{field} must be a whole number from {lo} to {hi}",
                 f"{field} 必须是 {lo} 到 {hi} 之间的整数")


def _must_be_empty(errs: _Errors, v: dict[str, Any], field: str, why_en: str, why_zh: str) -> None:
    if v[field] is not None:
        errs.add(field, "not_applicable", f"{field} must be empty: {why_en}", f"{field} 必须为空：{why_zh}")


def _check_fields(v: dict[str, Any], *, creating: bool, changed: set[str], old_status: str | None) -> _Errors:
    """Check and normalise the full field set of a product (``v`` is changed in place)."""
    errs = _Errors()
    v["sku"] = str(v["sku"]).strip()
    if not SKU_PATTERN.match(v["sku"]):
        errs.add("sku", "invalid_sku", "SKU: 1–64 letters, digits or . _ : / - (starting with a letter or digit)",
                 "SKU 须为 1–64 个字母、数字或 . _ : / -（以字母或数字开头）")
    kind = v["kind"]
    if kind not in PRODUCT_KINDS:
        errs.add("kind", "invalid_choice", f"kind must be one of {', '.join(PRODUCT_KINDS)}",
                 f"类型必须是 {', '.join(PRODUCT_KINDS)} 之一")
    if kind in CODE_KINDS:
        v["code_format"] = v["code_format"] or "number"
        if v["code_format"] not in CODE_FORMATS:
            errs.add("code_format", "invalid_choice", f"code_format must be one of {', '.join(CODE_FORMATS)}",
                     f"卡密格式必须是 {', '.join(CODE_FORMATS)} 之一")
    elif kind == "bundle" and v["code_format"] is not None:
        errs.add("code_format", "not_applicable", "A bundle has no code format of its own",
                 "组合权益包没有自身的卡密格式")
    _check_code_rules(errs, v, kind)

    for field, limit in _TEXT_LIMITS.items():
        v[field] = str(v[field] or "").strip()
        if len(v[field]) > limit:
            errs.add(field, "too_long", f"{field} is longer than {limit} characters", f"{field} 超过 {limit} 个字符")
    if not v["name_zh"]:
        errs.add("name_zh", "required", "A Chinese (zh-CN) name is required", "中文名称为必填项")

    if not _is_int(v["face_value"]) or not 0 <= v["face_value"] <= MAX_FACE_VALUE:
        errs.add("face_value", "out_of_range", "face_value is a whole number of fen (分) from 0",
                 "面值须为以“分”计的非负整数")
    try:
        v["currency"] = check_currency(str(v["currency"]))
    except ValidationFailed as exc:
        errs.extend(exc)

    _check_validity(errs, v, creating=creating, changed=changed)

    if v["provenance"] not in PROVENANCES:
        errs.add("provenance", "invalid_choice", f"provenance must be one of {', '.join(PROVENANCES)}",
                 f"来源必须是 {', '.join(PROVENANCES)} 之一")
    _check_status(errs, v["status"], creating=creating, old=old_status)
    _check_tags(errs, v)

    if kind == "reusable_code":
        if v["max_uses"] is None or not _is_int(v["max_uses"]) or not 2 <= v["max_uses"] <= MAX_USES:
            errs.add("max_uses", "out_of_range", f"A reusable code needs max_uses from 2 to {MAX_USES}",
                     f"可重复使用的卡密须设置 2 到 {MAX_USES} 之间的使用次数")
    else:
        _must_be_empty(errs, v, "max_uses", "only reusable codes have a use count", "只有可重复使用的卡密有使用次数")

    if kind == "bundle":
        for field in ("low_stock_threshold", "low_stock_days_cover"):
            _must_be_empty(errs, v, field, "a bundle has no stock of its own", "组合权益包没有自身库存")
    _check_range(errs, v, "low_stock_threshold", 0, 10_000_000, required=False)
    _check_range(errs, v, "low_stock_days_cover", 1, 365, required=False)
    if v["low_stock_threshold"] is not None and v["low_stock_days_cover"] is not None:
        errs.add("low_stock_days_cover", "exclusive",
                 "Set a low-stock threshold or days of cover, not both", "低库存阈值与可售天数只能设置其一")
    _check_range(errs, v, "near_expiry_days", 1, 365, required=True)
    return errs


def _check_code_rules(errs: _Errors, v: dict[str, Any], kind: str) -> None:
    """Card number and PIN rules: lengths 1..128 with min ≤ max, a known charset; none for bundles."""
    if kind not in CODE_KINDS:
        for field in RULE_FIELDS:
            _must_be_empty(errs, v, field, "a bundle holds no codes of its own", "组合权益包没有自身的卡密")
        return
    for field in RULE_FIELDS:
        if v[field] is None:
            v[field] = _RULE_DEFAULTS[field]
    for part, label_en, label_zh in (("code", "card number", "卡号"), ("pin", "PIN", "卡密")):
        lo, hi = f"{part}_min_length", f"{part}_max_length"
        _check_range(errs, v, lo, LENGTH_FLOOR, LENGTH_CEILING, required=True)
        _check_range(errs, v, hi, LENGTH_FLOOR, LENGTH_CEILING, required=True)
        if _is_int(v[lo]) and _is_int(v[hi]) and v[lo] > v[hi]:
            errs.add(hi, "out_of_range", f"The {label_en} maximum length is below its minimum",
                     f"{label_zh}最大长度小于最小长度")
        charset = f"{part}_charset"
        if v[charset] not in CHARSETS:
            errs.add(charset, "invalid_choice", f"{charset} must be one of {', '.join(CHARSETS)}",
                     f"{label_zh}字符集必须是 {', '.join(CHARSETS)} 之一")


def _check_validity(errs: _Errors, v: dict[str, Any], *, creating: bool, changed: set[str]) -> None:
    kind = v["validity_kind"]
    if kind not in VALIDITY_KINDS:
        errs.add("validity_kind", "invalid_choice", f"validity_kind must be one of {', '.join(VALIDITY_KINDS)}",
                 f"有效期规则必须是 {', '.join(VALIDITY_KINDS)} 之一")
        return
    if kind == "fixed_date":
        date = v["validity_date"]
        if date is None:
            errs.add("validity_date", "required", "A fixed-date validity needs validity_date",
                     "固定日期有效期须填写 validity_date")
        elif date.tzinfo is None:
            errs.add("validity_date", "naive_datetime", "validity_date needs a timezone offset (e.g. +08:00 or Z)",
                     "validity_date 须带时区偏移（例如 +08:00 或 Z）")
        elif (creating or {"validity_date", "validity_kind"} & changed) and date <= utcnow():
            errs.add("validity_date", "in_the_past", "validity_date must be in the future", "validity_date 必须是将来的时间")
    else:
        _must_be_empty(errs, v, "validity_date", f"validity is {kind}", f"有效期规则为 {kind}")
    if kind == "days_after_issue":
        _check_range(errs, v, "validity_days", 1, 3650, required=True)
    else:
        _must_be_empty(errs, v, "validity_days", f"validity is {kind}", f"有效期规则为 {kind}")


def _check_status(errs: _Errors, status: str, *, creating: bool, old: str | None) -> None:
    if status not in PRODUCT_STATUSES:
        errs.add("status", "invalid_choice", f"status must be one of {', '.join(PRODUCT_STATUSES)}",
                 f"状态必须是 {', '.join(PRODUCT_STATUSES)} 之一")
    elif creating and status == "archived":
        errs.add("status", "invalid_transition", "A new product is active or inactive", "新商品只能是上架或下架状态")
    elif old is not None and status != old and status not in STATUS_TRANSITIONS[old]:
        errs.add("status", "invalid_transition", f"status cannot change from {old} to {status}",
                 f"状态不能从 {old} 变为 {status}")


def _check_tags(errs: _Errors, v: dict[str, Any]) -> None:
    tags: list[str] = []
    for i, raw in enumerate(v["tags"] or []):
        tag = str(raw).strip()
        if not tag:
            errs.add(f"tags[{i}]", "required", "Tags cannot be empty", "标签不能为空")
        elif len(tag) > MAX_TAG_LENGTH:
            errs.add(f"tags[{i}]", "too_long", f"A tag is at most {MAX_TAG_LENGTH} characters",
                     f"标签最多 {MAX_TAG_LENGTH} 个字符")
        elif tag not in tags:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        errs.add("tags", "too_many", f"At most {MAX_TAGS} tags", f"最多 {MAX_TAGS} 个标签")
    v["tags"] = tags


async def _check_items(
    session: AsyncSession, errs: _Errors, kind: str, items: list[BundleItemIn]
) -> list[BundleItemOut]:
    """Bundle items: the tenant's own non-bundle products, quantity 1..100, no duplicates, enough units."""
    if kind != "bundle":
        if items:
            errs.add("items", "not_applicable", "Only bundles have items", "只有组合权益包可以包含商品")
        return []
    if len(items) > MAX_BUNDLE_ITEMS:
        errs.add("items", "too_many", f"At most {MAX_BUNDLE_ITEMS} items", f"最多 {MAX_BUNDLE_ITEMS} 个商品")
        return []
    found = await find_products(session, (i.product_id for i in items))
    seen: set[uuid.UUID] = set()
    out: list[BundleItemOut] = []
    for n, item in enumerate(items):
        field = f"items[{n}]"
        if not _is_int(item.quantity) or not 1 <= item.quantity <= MAX_ITEM_QUANTITY:
            errs.add(f"{field}.quantity", "out_of_range", f"quantity must be from 1 to {MAX_ITEM_QUANTITY}",
                     f"数量必须在 1 到 {MAX_ITEM_QUANTITY} 之间")
        if item.product_id in seen:
            errs.add(f"{field}.product_id", "duplicate", "The same product is listed twice; raise its quantity",
                     "同一商品重复出现，请改为增加数量")
            continue
        seen.add(item.product_id)
        product = found.get(item.product_id)
        if product is None:
            errs.add(f"{field}.product_id", "not_found", "No such product", "商品不存在")
        elif product.kind == "bundle":
            errs.add(f"{field}.product_id", "nested_bundle", "A bundle cannot contain another bundle",
                     "组合权益包不能包含另一个组合权益包")
        elif product.status == "archived":
            errs.add(f"{field}.product_id", "archived", "An archived product cannot go into a bundle",
                     "已归档的商品不能加入组合权益包")
        else:
            out.append(BundleItemOut(product.id, product.sku, product.name_zh, item.quantity))
    if len(items) < 2 and sum(i.quantity for i in items if _is_int(i.quantity)) < 2:
        errs.add("items", "too_few", "A bundle needs at least two items, or one item with quantity ≥ 2",
                 "组合权益包至少包含两个商品，或一个数量不少于 2 的商品")
    return out


async def _sku_taken(session: AsyncSession, sku: str, other_than: uuid.UUID | None = None) -> None:
    q = select(Product.id).where(Product.sku == sku)
    if other_than is not None:
        q = q.where(Product.id != other_than)
    if (await session.execute(q)).first() is not None:
        raise _sku_conflict(sku)


def _sku_conflict(sku: str) -> Conflict:
    return Conflict(f"SKU {sku!r} is already used by another product", f"SKU {sku!r} 已被其他商品使用",
                    code="sku_taken", errors=[FieldError(field="sku", message="already used", code="taken")])


async def _flush(session: AsyncSession, sku: str) -> None:
    try:
        await session.flush()
    except IntegrityError:  # a concurrent create took the SKU between our check and the insert
        raise _sku_conflict(sku) from None


def product_out(product: Product, items: list[BundleItemOut]) -> ProductOut:
    return ProductOut(
        id=product.id, sku=product.sku, kind=product.kind,
        code_format=None if product.kind == "bundle" else product.code_format,
        name_zh=product.name_zh, name_en=product.name_en, brand=product.brand, category=product.category,
        face_value=product.face_value, currency=product.currency, validity_kind=product.validity_kind,
        validity_date=product.validity_date, validity_days=product.validity_days,
        usage_rules=product.usage_rules, provenance=product.provenance, status=product.status,
        tags=list(product.tags or []), max_uses=product.max_uses,
        low_stock_threshold=product.low_stock_threshold, low_stock_days_cover=product.low_stock_days_cover,
        near_expiry_days=product.near_expiry_days,
        **{f: None if product.kind == "bundle" else getattr(product, f) for f in RULE_FIELDS},
        items=items, created_at=product.created_at,
    )


async def _items_of(session: AsyncSession, bundle_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[BundleItemOut]]:
    if not bundle_ids:
        return {}
    rows = await session.execute(
        select(BundleItem.bundle_id, Product.id, Product.sku, Product.name_zh, BundleItem.quantity)
        .join(Product, (Product.tenant_id == BundleItem.tenant_id) & (Product.id == BundleItem.item_id))
        .where(BundleItem.bundle_id.in_(bundle_ids))
        .order_by(BundleItem.bundle_id, BundleItem.id)
    )
    out: dict[uuid.UUID, list[BundleItemOut]] = {}
    for bundle_id, pid, sku, name, qty in rows.all():
        out.setdefault(bundle_id, []).append(BundleItemOut(pid, sku, name, qty))
    return out


async def find_product(session: AsyncSession, product_id: uuid.UUID) -> Product:
    """The tenant's product (model); 404 ``product_not_found`` otherwise (also for other tenants')."""
    product = (await session.execute(select(Product).where(Product.id == product_id))).scalar_one_or_none()
    if product is None:
        raise NotFound("Product not found", "权益商品不存在", code="product_not_found")
    return product


# ------------------------------------------------------------------------------------ the product cache
#: How long a process keeps a product it read for :func:`cached_product` (another process's change of the
#: product is seen within this time; a change made in this process at once).
PRODUCT_CACHE_TTL = 5.0
_PRODUCT_CACHE_SIZE = 4096
_PRODUCT_ATTRS = tuple(a.key for a in sa_inspect(Product).column_attrs)
_CHANGED = "kaquan_products_changed"  # session.info: (tenant, product or None for all) changed, uncommitted
_product_cache: dict[tuple[uuid.UUID, uuid.UUID], tuple[float, dict[str, Any]]] = {}


async def cached_product(session: AsyncSession, product_id: uuid.UUID) -> Product:
    """The tenant's product, as :func:`find_product` reads it, kept a few seconds per process.

    For paths that only read the product (a grant): stock is not in it (the allocation checks stock in
    SQL, so a product a few seconds old never oversells). A hit is a new, unattached copy: a caller can
    neither change the cached values nor attach them to its session. A product changed through the ORM in
    this process leaves the cache when the change is flushed and again when it commits; one this session
    changed and has not committed yet is not cached (nor one read while its change is pending).
    """
    tenant = require_tenant()
    key = (tenant, product_id)
    now = time.monotonic()
    hit = _product_cache.get(key)
    if hit is not None and hit[0] > now:
        return Product(**(hit[1] | {"tags": list(hit[1]["tags"])}))
    product = await find_product(session, product_id)
    changed: set[tuple[uuid.UUID, uuid.UUID | None]] = session.info.get(_CHANGED, set())
    if key not in changed and (tenant, None) not in changed and product not in session.dirty:
        if len(_product_cache) >= _PRODUCT_CACHE_SIZE:
            _drop_expired(now)
        values = {a: getattr(product, a) for a in _PRODUCT_ATTRS if a != "tags"}
        _product_cache[key] = (now + PRODUCT_CACHE_TTL, values | {"tags": list(product.tags or [])})
    return product


def _drop_expired(now: float) -> None:
    for key in [k for k, (until, _) in _product_cache.items() if until <= now]:
        _product_cache.pop(key, None)
    if len(_product_cache) >= _PRODUCT_CACHE_SIZE:  # all live: start over rather than grow
        _product_cache.clear()


def _forget_products(keys: Iterable[tuple[uuid.UUID, uuid.UUID | None]]) -> None:
    for tenant, product_id in keys:
        if product_id is not None:
            _product_cache.pop((tenant, product_id), None)
        else:
            for key in [k for k in _product_cache if k[0] == tenant]:
                _product_cache.pop(key, None)


def _mark_changed(session: Session | None, key: tuple[uuid.UUID, uuid.UUID | None]) -> None:
    _forget_products([key])
    if session is not None:
        session.info.setdefault(_CHANGED, set()).add(key)


@event.listens_for(Product, "after_insert")
@event.listens_for(Product, "after_update")
@event.listens_for(Product, "after_delete")
def _product_flushed(_mapper: Any, _connection: Any, target: Product) -> None:
    _mark_changed(object_session(target), (target.tenant_id, target.id))


@event.listens_for(KaquanSession, "do_orm_execute")
def _products_statement(state: ORMExecuteState) -> None:
    """An ORM ``update(Product)`` / ``delete(Product)`` statement: every cached product of the tenant goes."""
    mapper = state.bind_mapper
    if (state.is_update or state.is_delete) and mapper is not None and mapper.class_ is Product:
        tenant = current_tenant()
        if tenant is not None:
            _mark_changed(state.session, (tenant, None))
        else:  # a cross-tenant statement
            _product_cache.clear()


@event.listens_for(KaquanSession, "after_commit")
def _products_committed(session: Session) -> None:
    """Drop again what this transaction changed: another session may have cached it before the commit."""
    _forget_products(session.info.pop(_CHANGED, ()))


@event.listens_for(KaquanSession, "after_soft_rollback")
def _products_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    if previous_transaction.parent is None:  # the whole transaction, not a savepoint
        _forget_products(session.info.pop(_CHANGED, ()))


async def find_products(session: AsyncSession, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Product]:
    """The tenant's products among ``ids``, by id, in one query (unknown or other tenants' ids are absent)."""
    wanted = list(set(ids))
    if not wanted:
        return {}
    return {p.id: p for p in (await session.execute(select(Product).where(Product.id.in_(wanted)))).scalars()}


async def products_by_id(session: AsyncSession, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, ProductOut]:
    """The tenant's products with these ids as API views, read together (unknown ids are left out)."""
    rows = await find_products(session, ids)
    items = await _items_of(session, [p.id for p in rows.values() if p.kind == "bundle"])
    return {pid: product_out(p, items.get(pid, [])) for pid, p in rows.items()}


async def get_product_by_sku(session: AsyncSession, sku: str) -> Product:
    """The tenant's product with this SKU (model, for the import CLI); 404 ``product_not_found`` otherwise."""
    product = (await session.execute(select(Product).where(Product.sku == sku.strip()))).scalar_one_or_none()
    if product is None:
        raise NotFound(f"No product with SKU {sku!r}", f"没有 SKU 为 {sku!r} 的商品", code="product_not_found")
    return product


async def get_product(session: AsyncSession, product_id: uuid.UUID) -> ProductOut:
    product = await find_product(session, product_id)
    items = await _items_of(session, [product.id]) if product.kind == "bundle" else {}
    return product_out(product, items.get(product.id, []))


async def create_product(session: AsyncSession, data: ProductCreate) -> ProductOut:
    """Check every rule, store the product (and its bundle items), audit ``product.created``."""
    v: dict[str, Any] = {f: getattr(data, f) for f in _FIELDS}
    errs = _check_fields(v, creating=True, changed=set(_FIELDS), old_status=None)
    items = await _check_items(session, errs, v["kind"], data.items)
    errs.raise_if_any()
    await _sku_taken(session, v["sku"])
    if v["kind"] == "bundle":
        v["code_format"] = "number"  # the column is not nullable; bundles show ``null``
        v.update(_RULE_DEFAULTS)
    product = Product(**v)
    session.add(product)
    await _flush(session, v["sku"])
    for item in items:
        session.add(BundleItem(bundle_id=product.id, item_id=item.product_id, quantity=item.quantity))
    await session.flush()
    record(session, "product.created", "product", product.id,
           {"sku": product.sku, "kind": product.kind, "name_zh": product.name_zh, "status": product.status,
            "face_value": product.face_value, "currency": product.currency,
            "items": [{"product_id": str(i.product_id), "quantity": i.quantity} for i in items]})
    return product_out(product, items)


async def update_product(session: AsyncSession, product_id: uuid.UUID, data: ProductUpdate) -> ProductOut:
    """Apply a partial change under the same rules; audit ``product.updated`` with what changed."""
    product = await find_product(session, product_id)
    patch = {f: getattr(data, f) for f in data.__struct_fields__ if getattr(data, f) is not msgspec.UNSET}
    items_in = patch.pop("items", None)
    v: dict[str, Any] = {f: getattr(product, f) for f in _FIELDS}
    if product.kind == "bundle":
        v["code_format"] = None
        v.update(dict.fromkeys(RULE_FIELDS))
    if "validity_kind" in patch and patch["validity_kind"] != product.validity_kind:
        for field in _VALIDITY_FIELDS.values():  # the old rule's value goes unless it is restated
            patch.setdefault(field, None)
    v.update(patch)
    errs = _check_fields(v, creating=False, changed=set(patch), old_status=product.status)
    current_items = (await _items_of(session, [product.id])).get(product.id, []) if product.kind == "bundle" else []
    if items_in is not None:
        items = await _check_items(session, errs, product.kind, items_in)
    else:
        items = current_items
    errs.raise_if_any()
    if product.kind == "bundle":
        v["code_format"] = "number"
        v.update(_RULE_DEFAULTS)
    changes = {f: v[f] for f in _FIELDS if v[f] != getattr(product, f)}
    if "sku" in changes:
        await _sku_taken(session, v["sku"], other_than=product.id)
    if "code_format" in changes and await _has_codes(session, product.id):
        raise Conflict("The code format cannot change once the product has codes",
                       "商品已有卡密，不能再修改卡密格式", code="product_has_stock",
                       errors=[FieldError(field="code_format", message="product has codes", code="locked")])
    for field, value in changes.items():
        setattr(product, field, value)
    items_changed = items_in is not None and [(i.product_id, i.quantity) for i in items] != [
        (i.product_id, i.quantity) for i in current_items]
    if items_changed:
        await session.execute(delete(BundleItem).where(BundleItem.bundle_id == product.id),
                              execution_options={"synchronize_session": False})
        for item in items:
            session.add(BundleItem(bundle_id=product.id, item_id=item.product_id, quantity=item.quantity))
    await _flush(session, product.sku)
    if changes or items_changed:
        audit: dict[str, Any] = {"sku": product.sku, "changes": changes}
        if items_changed:
            audit["items"] = [{"product_id": str(i.product_id), "quantity": i.quantity} for i in items]
        record(session, "product.updated", "product", product.id, audit)
    return product_out(product, items)


async def _has_codes(session: AsyncSession, product_id: uuid.UUID) -> bool:
    check: HoldsCodes
    for check in extensions(HOLDS_CODES):
        if await check(session, product_id):
            return True
    return False


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _has_tag(session: AsyncSession, tag: str) -> Any:
    dialect = session.bind.dialect.name if session.bind is not None else ""
    if dialect == "postgresql":
        elements = func.json_array_elements_text(Product.tags).table_valued("value").render_derived(name="tag_values")
    else:
        elements = func.json_each(Product.tags).table_valued("value").alias("tag_values")
    return exists(select(literal(1)).select_from(elements).where(elements.c.value == tag))


async def list_products(
    session: AsyncSession, filters: ProductFilter, cursor: uuid.UUID | None = None, limit: int = 50
) -> ProductPage:
    """Newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    errs = _Errors()
    if filters.kind is not None and filters.kind not in PRODUCT_KINDS:
        errs.add("kind", "invalid_choice", f"kind must be one of {', '.join(PRODUCT_KINDS)}",
                 f"类型必须是 {', '.join(PRODUCT_KINDS)} 之一")
    if filters.status is not None and filters.status not in PRODUCT_STATUSES:
        errs.add("status", "invalid_choice", f"status must be one of {', '.join(PRODUCT_STATUSES)}",
                 f"状态必须是 {', '.join(PRODUCT_STATUSES)} 之一")
    if not 1 <= limit <= MAX_PAGE:
        errs.add("limit", "out_of_range", f"limit must be from 1 to {MAX_PAGE}", f"limit 必须在 1 到 {MAX_PAGE} 之间")
    errs.raise_if_any()
    q = select(Product)
    for field in ("kind", "status", "brand", "category"):
        value = getattr(filters, field)
        if value is not None:
            q = q.where(getattr(Product, field) == value)
    if filters.tag:
        q = q.where(_has_tag(session, filters.tag.strip()))
    if filters.q and filters.q.strip():
        pattern = _like(filters.q.strip())
        q = q.where(or_(Product.sku.ilike(pattern, escape="\\"), Product.name_zh.ilike(pattern, escape="\\"),
                        Product.name_en.ilike(pattern, escape="\\")))
    page = await keyset_page(session, q, Product.id, cursor=cursor, limit=limit)
    items = await _items_of(session, [p.id for p in page.items if p.kind == "bundle"])
    return ProductPage([product_out(p, items.get(p.id, [])) for p in page.items], page.next_cursor)


async def bundle_item_choices(session: AsyncSession, exclude: uuid.UUID | None = None) -> list[ProductOut]:
    """Products a bundle may hold (neither bundles nor archived; not ``exclude``), of the newest page."""
    page = await list_products(session, ProductFilter(), None, MAX_PAGE)
    return [p for p in page.items if p.kind != "bundle" and p.status != "archived" and p.id != exclude]
