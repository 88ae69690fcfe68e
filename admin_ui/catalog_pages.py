"""Tenant console catalog pages: product list (filters, search), create and edit forms, product detail
with its stock per state, value at cost, batches and open alerts.

The form turns what people type into the catalog service's input (yuan → integer fen with ``Decimal``,
a date → the end of that day in the tenant's timezone, comma-separated tags, bundle item rows); every
catalog rule is checked by :mod:`core.catalog.services`.
"""

from __future__ import annotations

import re
import uuid
from itertools import zip_longest
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import FormMultiDict
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect

from admin_ui.console_pages import shell
from admin_ui.forms import FormInvalid, FormProblem, convert, problem_of, read_form, values
from admin_ui.i18n import N_
from admin_ui.money import AmountInvalid, end_of_day, fen_to_yuan, last_day, parse_day, yuan_to_fen
from admin_ui.rendering import flash, locale_of, render, translator
from core.catalog.models import CODE_FORMATS, PRODUCT_KINDS, PRODUCT_STATUSES, PROVENANCES, VALIDITY_KINDS
from core.catalog.rules import CHARSETS, DEFAULT_CHARSET, DEFAULT_MAX_LENGTH, DEFAULT_MIN_LENGTH, RULE_FIELDS
from core.catalog.schemas import ProductCreate, ProductFilter, ProductOut, ProductUpdate
from core.catalog.services import (
    CODE_KINDS,
    bundle_item_choices,
    create_product,
    get_product,
    list_products,
    update_product,
)
from core.db.types import DbSession
from core.errors import DomainError
from core.inventory.importing.services import accepts_codes
from core.inventory.queries import list_open_alerts, product_stock
from core.inventory.stock import StockLevel, stock_levels
from tenants.guards import provide_db, require_permission

PAGE_SIZE = 50
ITEM_ROWS = 3
"""Empty bundle-item rows offered below the bundle's current items."""
TEXT_FIELDS = (
    "sku",
    "kind",
    "code_format",
    "name_zh",
    "name_en",
    "brand",
    "category",
    "face_value",
    "currency",
    "validity_kind",
    "validity_date",
    "validity_days",
    "usage_rules",
    "provenance",
    "status",
    "tags",
    "max_uses",
    "low_stock_threshold",
    "low_stock_days_cover",
    "near_expiry_days",
    *RULE_FIELDS,
)
#: Card number / PIN charsets as the form offers them (translated in the template).
CHARSET_LABELS: dict[str, str] = {
    "printable": N_("Any printable character"),
    "digits": N_("Digits 0–9"),
    "alnum": N_("Letters and digits"),
    "crockford": N_("Crockford base32 (no I, L, O, U)"),
}
_WHOLE = re.compile(r"^\d{1,9}$")
_TAG_SPLIT = re.compile(r"[,，;；\n]+")
MONEY_MESSAGE = N_("Enter an amount in yuan with at most two decimals, e.g. 12.50.")
WHOLE_MESSAGE = N_("Enter a whole number.")
DATE_MESSAGE = N_("Enter a date as YYYY-MM-DD.")
Query = Annotated[str | None, Parameter(required=False)]


def _whole(form: dict[str, Any], name: str) -> int | None:
    text = str(form.get(name) or "").strip()
    if not text:
        return None
    if not _WHOLE.match(text):
        raise FormInvalid(name, WHOLE_MESSAGE)
    return int(text)


def read_product_form(raw: FormMultiDict) -> dict[str, Any]:
    """The submitted product form as strings (for showing it again), with its bundle item rows."""
    form: dict[str, Any] = values(raw, *TEXT_FIELDS)
    products = [p for p in raw.getall("item_product", []) if isinstance(p, str)]
    quantities = [q for q in raw.getall("item_quantity", []) if isinstance(q, str)]
    form["items"] = [
        {"product_id": (p or "").strip(), "quantity": (q or "").strip()}
        for p, q in zip_longest(products, quantities, fillvalue="")
    ]
    return form


def product_input(form: dict[str, Any], tz: str, *, kind: str) -> dict[str, Any]:
    """The catalog service's fields from the form; fields the chosen kind or validity does not use are
    left out (the form hides them). :class:`FormInvalid` names a field that is not a number or date."""
    data: dict[str, Any] = {
        f: form[f]
        for f in (
            "sku",
            "name_zh",
            "name_en",
            "brand",
            "category",
            "currency",
            "usage_rules",
            "provenance",
            "status",
            "validity_kind",
        )
    }
    data["currency"] = data["currency"].upper()
    if kind != "bundle":
        data["code_format"] = form["code_format"] or "number"
    try:
        data["face_value"] = yuan_to_fen(form["face_value"]) if form["face_value"] else 0
    except AmountInvalid:
        raise FormInvalid("face_value", MONEY_MESSAGE) from None
    data["validity_date"] = None
    data["validity_days"] = None
    if form["validity_kind"] == "fixed_date" and form["validity_date"]:
        try:
            data["validity_date"] = end_of_day(parse_day(form["validity_date"]), tz)
        except ValueError:
            raise FormInvalid("validity_date", DATE_MESSAGE) from None
    if form["validity_kind"] == "days_after_issue":
        data["validity_days"] = _whole(form, "validity_days")
    data["max_uses"] = _whole(form, "max_uses") if kind == "reusable_code" else None
    if kind == "bundle":
        data["low_stock_threshold"] = data["low_stock_days_cover"] = None
    else:
        data["low_stock_threshold"] = _whole(form, "low_stock_threshold")
        data["low_stock_days_cover"] = _whole(form, "low_stock_days_cover")
    near = _whole(form, "near_expiry_days")
    data["near_expiry_days"] = 30 if near is None else near
    if kind != "bundle":  # an empty field keeps the default (4–64 printable) or, on edit, the current rule
        for part in ("code", "pin"):
            for field in (f"{part}_min_length", f"{part}_max_length"):
                if (number := _whole(form, field)) is not None:
                    data[field] = number
            if charset := (form.get(f"{part}_charset") or "").strip():
                data[f"{part}_charset"] = charset
    data["tags"] = [t.strip() for t in _TAG_SPLIT.split(form["tags"]) if t.strip()]
    if kind == "bundle":
        items = []
        for row in form["items"]:
            if not row["product_id"]:
                continue
            try:
                product_id = uuid.UUID(row["product_id"])
            except ValueError:
                raise FormInvalid("items") from None
            quantity = _whole(row, "quantity")
            items.append({"product_id": product_id, "quantity": 1 if quantity is None else quantity})
        data["items"] = items
    return data


def form_of(product: ProductOut, tz: str) -> dict[str, Any]:
    """An existing product as the form shows it (fen → yuan, instants → days)."""
    day = last_day(product.validity_date, tz)
    return {
        **{
            f: getattr(product, f)
            for f in (
                "sku",
                "kind",
                "name_zh",
                "name_en",
                "brand",
                "category",
                "currency",
                "validity_kind",
                "usage_rules",
                "provenance",
                "status",
            )
        },
        "code_format": product.code_format or "number",
        "face_value": fen_to_yuan(product.face_value),
        "validity_date": day.isoformat() if day else "",
        **{
            f: "" if getattr(product, f) is None else str(getattr(product, f))
            for f in (
                "validity_days",
                "max_uses",
                "low_stock_threshold",
                "low_stock_days_cover",
                "near_expiry_days",
                *RULE_FIELDS,
            )
        },
        "tags": ", ".join(product.tags),
        "items": [{"product_id": str(i.product_id), "quantity": str(i.quantity)} for i in product.items],
    }


def bad_fields(exc: Exception) -> set[str]:
    """The form fields an error concerns (``items[1].quantity`` → ``items``)."""
    if isinstance(exc, DomainError):
        return {re.split(r"[\[.]", e.field, maxsplit=1)[0] for e in exc.errors}
    if isinstance(exc, FormInvalid) and exc.field:
        return {exc.field}
    return set()


def _failure(exc: Exception, request: Request[Any, Any, Any]) -> tuple[FormProblem, int]:
    status = exc.status if isinstance(exc, DomainError) else 422
    return problem_of(exc, translator(request), locale_of(request)), status


class ProductsController(Controller):
    path = "/products"
    guards = [require_permission("catalog.read")]
    dependencies = {"db": Provide(provide_db)}

    @get("/")
    async def products(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        kind: Query = None,
        product_status: Annotated[str | None, Parameter(query="status", required=False)] = None,
        q: Annotated[str | None, Parameter(required=False, max_length=100)] = None,
        cursor: Annotated[uuid.UUID | None, Parameter(required=False)] = None,
    ) -> Response[str]:
        """Products newest first, filtered by kind and status, searched by SKU or name."""
        filters = ProductFilter(
            kind=kind if kind in PRODUCT_KINDS else None,
            status=product_status if product_status in PRODUCT_STATUSES else None,
            q=(q or "").strip() or None,
        )
        page = await list_products(db, filters, cursor, PAGE_SIZE)
        levels = await stock_levels(db)
        ctx = await shell(request, db)
        ctx.update(
            products=page.items,
            next_cursor=page.next_cursor,
            levels=levels,
            filters={"kind": filters.kind or "", "status": filters.status or "", "q": filters.q or ""},
            kinds=PRODUCT_KINDS,
            statuses=PRODUCT_STATUSES,
            code_kinds=CODE_KINDS,
        )
        return render(request, "console/products.html", ctx)

    async def _form_page(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        form: dict[str, Any],
        *,
        product: ProductOut | None = None,
        problem: FormProblem | None = None,
        bad: set[str] | None = None,
        status: int = 200,
    ) -> Response[str]:
        ctx = await shell(request, db)
        items = list(form.get("items") or [])
        items += [{"product_id": "", "quantity": ""}] * ITEM_ROWS
        ctx.update(
            form=form,
            product=product,
            items=items,
            choices=await bundle_item_choices(db, product.id if product else None),
            problem=problem,
            bad=bad or set(),
            kinds=PRODUCT_KINDS,
            code_formats=CODE_FORMATS,
            validity_kinds=VALIDITY_KINDS,
            provenances=PROVENANCES,
            statuses=[s for s in PRODUCT_STATUSES if product is not None or s != "archived"],
            code_kinds=CODE_KINDS,
            charsets=CHARSETS,
            charset_labels=CHARSET_LABELS,
        )
        return render(request, "console/product_form.html", ctx, status=status)

    @get("/new", guards=[require_permission("catalog.manage")])
    async def new_product(
        self, request: Request[Any, Any, Any], db: DbSession, kind: Query = None
    ) -> Response[str]:
        ctx = await shell(request, db)
        form: dict[str, Any] = {f: "" for f in TEXT_FIELDS}
        form.update(
            kind=kind if kind in PRODUCT_KINDS else "code",
            code_format="number",
            currency=ctx["tenant"].currency,
            validity_kind="batch_expiry",
            provenance="official",
            status="active",
            near_expiry_days="30",
            code_min_length=str(DEFAULT_MIN_LENGTH),
            code_max_length=str(DEFAULT_MAX_LENGTH),
            code_charset=DEFAULT_CHARSET,
            pin_min_length=str(DEFAULT_MIN_LENGTH),
            pin_max_length=str(DEFAULT_MAX_LENGTH),
            pin_charset=DEFAULT_CHARSET,
            items=[],
        )
        return await self._form_page(request, db, form)

    @post("/", status_code=303, guards=[require_permission("catalog.manage")])
    async def create(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        form = read_product_form(await read_form(request))
        kind = form["kind"]
        try:
            ctx_tz = (await shell(request, db))["tz"]
            data = convert({"kind": kind, **product_input(form, ctx_tz, kind=kind)}, ProductCreate)
            product = await create_product(db, data)
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._form_page(
                request, db, form, problem=problem, bad=bad_fields(exc), status=status
            )
        flash(request, translator(request).gettext("Product %(sku)s is created.") % {"sku": product.sku})
        return Redirect(f"/console/products/{product.id}", status_code=303)

    @get("/{product_id:uuid}")
    async def detail(
        self, request: Request[Any, Any, Any], db: DbSession, product_id: uuid.UUID
    ) -> Response[str]:
        """The product, its stock per state and per batch, value at cost, and open alerts."""
        product = await get_product(db, product_id)
        ctx = await shell(request, db)
        stock = await product_stock(db, product.id) if product.kind != "bundle" else None
        ctx.update(
            product=product,
            stock=stock,
            alerts=await list_open_alerts(db, product.id),
            item_levels=await stock_levels(db) if product.kind == "bundle" else {},
            empty_level=StockLevel(currency=product.currency),
            code_kinds=CODE_KINDS,
            charset_labels=CHARSET_LABELS,
            importable=accepts_codes(product.kind, product.status),
        )
        return render(request, "console/product_detail.html", ctx)

    @get("/{product_id:uuid}/edit", guards=[require_permission("catalog.manage")])
    async def edit(
        self, request: Request[Any, Any, Any], db: DbSession, product_id: uuid.UUID
    ) -> Response[str]:
        product = await get_product(db, product_id)
        tz = (await shell(request, db))["tz"]
        return await self._form_page(request, db, form_of(product, tz), product=product)

    @post("/{product_id:uuid}", status_code=303, guards=[require_permission("catalog.manage")])
    async def update(
        self, request: Request[Any, Any, Any], db: DbSession, product_id: uuid.UUID
    ) -> Response[Any]:
        product = await get_product(db, product_id)
        form = read_product_form(await read_form(request))
        form["kind"] = product.kind  # the kind is fixed at creation
        try:
            tz = (await shell(request, db))["tz"]
            data = convert(product_input(form, tz, kind=product.kind), ProductUpdate)
            updated = await update_product(db, product.id, data)
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._form_page(
                request, db, form, product=product, problem=problem, bad=bad_fields(exc), status=status
            )
        flash(request, translator(request).gettext("Product %(sku)s is saved.") % {"sku": updated.sku})
        return Redirect(f"/console/products/{updated.id}", status_code=303)
