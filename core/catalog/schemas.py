"""Structs in and out of the catalog services (shared by the API, the console and the CLI).

Types are strict (``face_value`` is an integer in fen: a JSON float is refused); the business rules
(kinds, validity, bundles, limits) are checked by :mod:`core.catalog.services`, so every surface gets
the same bilingual field errors.
"""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec
from msgspec import UNSET, UnsetType

from core.validation import Fen


class BundleItemIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    product_id: uuid.UUID
    quantity: int = 1


class ProductCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A new product. ``items`` only for ``kind="bundle"``; ``code_format`` only for code kinds.

    Code kinds carry card number and PIN rules: ``code_min_length``/``code_max_length`` (default 4–64,
    bounds 1–128) and ``code_charset`` (``digits``, ``alnum``, ``crockford`` or ``printable``, the
    default), the same for ``pin_*``. Lengths count the canonical form (spaces and dashes removed).
    """

    sku: str
    kind: str
    name_zh: str
    name_en: str = ""
    code_format: str | None = None
    brand: str = ""
    category: str = ""
    face_value: Fen = 0
    currency: str = "CNY"
    validity_kind: str = "batch_expiry"
    validity_date: dt.datetime | None = None
    validity_days: int | None = None
    usage_rules: str = ""
    provenance: str = "official"
    status: str = "active"
    tags: list[str] = msgspec.field(default_factory=list)
    max_uses: int | None = None
    low_stock_threshold: int | None = None
    low_stock_days_cover: int | None = None
    near_expiry_days: int = 30
    code_min_length: int | None = None
    code_max_length: int | None = None
    code_charset: str | None = None
    pin_min_length: int | None = None
    pin_max_length: int | None = None
    pin_charset: str | None = None
    items: list[BundleItemIn] = msgspec.field(default_factory=list)


class ProductUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A partial change: only the fields present are changed; ``null`` clears a nullable field.

    ``kind`` cannot change; ``code_format`` only while the product has no codes; ``items`` replaces
    a bundle's items as a whole.
    """

    sku: str | UnsetType = UNSET
    name_zh: str | UnsetType = UNSET
    name_en: str | UnsetType = UNSET
    code_format: str | UnsetType = UNSET
    brand: str | UnsetType = UNSET
    category: str | UnsetType = UNSET
    face_value: Fen | UnsetType = UNSET
    currency: str | UnsetType = UNSET
    validity_kind: str | UnsetType = UNSET
    validity_date: dt.datetime | UnsetType | None = UNSET
    validity_days: int | UnsetType | None = UNSET
    usage_rules: str | UnsetType = UNSET
    provenance: str | UnsetType = UNSET
    status: str | UnsetType = UNSET
    tags: list[str] | UnsetType = UNSET
    max_uses: int | UnsetType | None = UNSET
    low_stock_threshold: int | UnsetType | None = UNSET
    low_stock_days_cover: int | UnsetType | None = UNSET
    near_expiry_days: int | UnsetType = UNSET
    code_min_length: int | UnsetType = UNSET
    code_max_length: int | UnsetType = UNSET
    code_charset: str | UnsetType = UNSET
    pin_min_length: int | UnsetType = UNSET
    pin_max_length: int | UnsetType = UNSET
    pin_charset: str | UnsetType = UNSET
    items: list[BundleItemIn] | UnsetType = UNSET


class ProductFilter(msgspec.Struct, kw_only=True):
    """List filters; ``q`` searches the SKU and both names (case-insensitive substring)."""

    kind: str | None = None
    status: str | None = None
    brand: str | None = None
    category: str | None = None
    tag: str | None = None
    q: str | None = None


class BundleItemOut(msgspec.Struct):
    product_id: uuid.UUID
    sku: str
    name_zh: str
    quantity: int


class ProductOut(msgspec.Struct):
    id: uuid.UUID
    sku: str
    kind: str
    code_format: str | None
    name_zh: str
    name_en: str
    brand: str
    category: str
    face_value: Fen
    currency: str
    validity_kind: str
    validity_date: dt.datetime | None
    validity_days: int | None
    usage_rules: str
    provenance: str
    status: str
    tags: list[str]
    max_uses: int | None
    low_stock_threshold: int | None
    low_stock_days_cover: int | None
    near_expiry_days: int
    code_min_length: int | None
    code_max_length: int | None
    code_charset: str | None
    pin_min_length: int | None
    pin_max_length: int | None
    pin_charset: str | None
    items: list[BundleItemOut]
    created_at: dt.datetime


class ProductPage(msgspec.Struct):
    items: list[ProductOut]
    next_cursor: uuid.UUID | None
