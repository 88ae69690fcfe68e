"""Tenant console inventory pages: stock of every code product with its alerts, batches with their codes
(masked), voiding codes, and the audited reveal and export of plaintext codes.

Reveal and export are for roles with ``codes.reveal`` (owner, admin): others neither see the buttons nor
get past the guard, and :mod:`core.inventory.custody` checks again, asks for a reason, rate-limits and
audits. A revealed code is shown on one ``no-store`` page only.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect

from admin_ui.console_pages import shell
from admin_ui.forms import FormInvalid, FormProblem, problem_of, read_form, values
from admin_ui.i18n import N_
from admin_ui.rendering import flash, locale_of, render, translator
from core.catalog.services import get_product, products_by_id
from core.db.types import DbSession
from core.errors import DomainError
from core.inventory import custody
from core.inventory.models import CODE_STATES
from core.inventory.queries import (
    batches_by_number,
    check_states,
    codes_in_batch,
    find_batch,
    get_batch,
    get_code,
    list_codes,
    stock_overview,
)
from core.inventory.schemas import StockAlertOut
from core.inventory.stock import StockLevel, evaluate_alerts, stock_levels
from tenants.guards import principal_of, provide_db, require_permission

STOCK_PAGE = 100
BATCH_PAGE = 50
CODE_PAGE = 100
UuidQuery = Annotated[uuid.UUID | None, Parameter(required=False)]


def page_of(text: str | None) -> int:
    """The page number a link or the jump box asked for (1 for none or nonsense; the query clamps the rest)."""
    try:
        return max(1, int((text or "1").strip()))
    except ValueError:
        return 1
_NO_STORE_DOWNLOAD = {"Cache-Control": "no-store", "Pragma": "no-cache", "X-Content-Type-Options": "nosniff"}


def _failure(exc: Exception, request: Request[Any, Any, Any]) -> tuple[FormProblem, int]:
    status = exc.status if isinstance(exc, DomainError) else 422
    return problem_of(exc, translator(request), locale_of(request)), status


def _alerts_by_product(alerts: list[StockAlertOut]) -> dict[uuid.UUID, list[StockAlertOut]]:
    out: dict[uuid.UUID, list[StockAlertOut]] = defaultdict(list)
    for a in alerts:
        out[a.product_id].append(a)
    return dict(out)


class StockController(Controller):
    path = "/stock"
    guards = [require_permission("inventory.read")]
    dependencies = {"db": Provide(provide_db)}

    @get("/")
    async def stock(
        self, request: Request[Any, Any, Any], db: DbSession, cursor: UuidQuery = None
    ) -> Response[str]:
        """Every code product (not archived) with its codes by state, value at cost and open alerts."""
        stock = await stock_overview(db, cursor, STOCK_PAGE)
        ctx = await shell(request, db)
        ctx.update(
            products=stock.products,
            levels=stock.levels,
            empty_levels={p.id: StockLevel(currency=p.currency) for p in stock.products},
            alerts=stock.alerts,
            alerts_by_product=_alerts_by_product(stock.alerts),
            value=stock.value,
            next_cursor=stock.next_cursor,
        )
        return render(request, "console/stock.html", ctx)

    @post("/check-alerts", status_code=303, guards=[require_permission("inventory.manage")])
    async def check_alerts(self, request: Request[Any, Any, Any], db: DbSession) -> Redirect:
        """Evaluate low-stock and near-expiry alerts now (of one product, or all) and say what changed."""
        form = values(await read_form(request), "product_id")
        product_id = None
        if form["product_id"]:
            try:
                product_id = uuid.UUID(form["product_id"])
            except ValueError:
                raise FormInvalid("product_id") from None
            await get_product(db, product_id)
        result = await evaluate_alerts(db, product_id)
        t = translator(request)
        flash(
            request,
            t.gettext("Alerts checked: %(opened)s new, %(resolved)s resolved.")
            % {"opened": len(result.opened), "resolved": len(result.resolved)},
        )
        target = f"/console/products/{product_id}" if product_id else "/console/stock"
        return Redirect(target, status_code=303)


class BatchesController(Controller):
    path = "/batches"
    guards = [require_permission("inventory.read")]
    dependencies = {"db": Provide(provide_db)}

    @get("/")
    async def batches(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        product_id: UuidQuery = None,
        page_number: Annotated[str | None, Parameter(query="page", required=False)] = None,
    ) -> Response[str]:
        """Batches newest first (of one product, or all), numbered pages with the total count."""
        page = await batches_by_number(db, product_id, page_of(page_number), BATCH_PAGE)
        levels = await stock_levels(db, product_id, by="batch")
        products = await products_by_id(db, {b.product_id for b in page.items})
        ctx = await shell(request, db)
        ctx.update(
            batches=page.items,
            levels=levels,
            products=products,
            product=products.get(product_id) if product_id else None,
            product_id=product_id,
            page=page,
        )
        return render(request, "console/batches.html", ctx)

    async def _page(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        batch_id: uuid.UUID,
        *,
        code_state: str | None = None,
        cursor: uuid.UUID | None = None,
        problem: FormProblem | None = None,
        reason: str = "",
        selected: frozenset[str] = frozenset(),
        status: int = 200,
    ) -> Response[str]:
        detail = await get_batch(db, batch_id)
        product = await get_product(db, detail.batch.product_id)
        state = check_states([code_state], "state")[0] if code_state else None
        codes = await list_codes(db, batch_id=batch_id, state=state, cursor=cursor, limit=CODE_PAGE)
        ctx = await shell(request, db)
        ctx.update(
            batch=detail.batch,
            levels=detail.levels,
            product=product,
            codes=codes.items,
            next_cursor=codes.next_cursor,
            code_state=state or "",
            states=CODE_STATES,
            voidable=custody.VOIDABLE,
            may_reveal=custody.may_reveal(principal_of(request)),
            problem=problem,
            reason=reason,
            selected=selected,
        )
        return render(request, "console/batch.html", ctx, status=status)

    @get("/{batch_id:uuid}")
    async def batch(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        batch_id: uuid.UUID,
        code_state: Annotated[str | None, Parameter(query="state", required=False)] = None,
        cursor: UuidQuery = None,
    ) -> Response[str]:
        """The batch, its stock by state, and its codes masked to the last four characters."""
        return await self._page(request, db, batch_id, code_state=code_state or None, cursor=cursor)

    @post("/{batch_id:uuid}/void", status_code=303, guards=[require_permission("inventory.manage")])
    async def void(
        self, request: Request[Any, Any, Any], db: DbSession, batch_id: uuid.UUID
    ) -> Response[Any]:
        """Void the selected codes with a reason (they never go out again)."""
        raw = await read_form(request)
        reason = values(raw, "reason")["reason"]
        picked = [c for c in raw.getall("code_ids", []) if isinstance(c, str)]
        t = translator(request)
        try:
            await find_batch(db, batch_id)
            if not picked:
                raise FormInvalid("code_ids", N_("Select the codes to void."))
            try:
                ids = [uuid.UUID(c) for c in picked]
            except ValueError:
                raise FormInvalid("code_ids") from None
            in_batch = await codes_in_batch(db, batch_id, ids)
            if len(in_batch) != len(set(ids)):
                raise FormInvalid("code_ids", N_("Some selected codes are not in this batch."))
            count = await custody.void_codes(db, ids, reason)
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._page(
                request,
                db,
                batch_id,
                problem=problem,
                reason=reason,
                selected=frozenset(picked),
                status=status,
            )
        flash(
            request,
            t.ngettext("%(num)s code is voided.", "%(num)s codes are voided.", count) % {"num": count},
        )
        return Redirect(f"/console/batches/{batch_id}", status_code=303)

    @post("/{batch_id:uuid}/export", status_code=200, guards=[require_permission("codes.reveal")])
    async def export(
        self, request: Request[Any, Any, Any], db: DbSession, batch_id: uuid.UUID
    ) -> Response[Any]:
        """A CSV of the batch's codes in the chosen states (plaintext): reason required, audited."""
        raw = await read_form(request)
        reason = values(raw, "reason")["reason"]
        chosen = [s for s in raw.getall("states", []) if isinstance(s, str)] or ["available"]
        try:
            states = check_states(chosen)
            name, body = await custody.export_batch(
                db, request.app.state.kernel.keys, batch_id, reason, principal_of(request), states
            )
        except DomainError as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._page(request, db, batch_id, problem=problem, status=status)
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={**_NO_STORE_DOWNLOAD, "Content-Disposition": f'attachment; filename="{name}"'},
        )


class CodesController(Controller):
    """Reveal one code: a form asking the reason, then the plaintext once on a ``no-store`` page."""

    path = "/codes"
    guards = [require_permission("codes.reveal")]
    dependencies = {"db": Provide(provide_db)}

    async def _form(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        code_id: uuid.UUID,
        *,
        problem: FormProblem | None = None,
        reason: str = "",
        status: int = 200,
    ) -> Response[str]:
        row = await get_code(db, code_id)
        batch = await find_batch(db, row.batch_id)
        product = await get_product(db, batch.product_id)
        ctx = await shell(request, db)
        ctx.update(
            code={"id": row.id, "masked": row.masked, "has_pin": row.has_pin, "state": row.state},
            batch=batch,
            product=product,
            problem=problem,
            reason=reason,
            revealed=None,
            limit=custody.REVEALS_PER_HOUR,
        )
        return render(request, "console/reveal.html", ctx, status=status)

    @get("/{code_id:uuid}/reveal")
    async def reveal_form(
        self, request: Request[Any, Any, Any], db: DbSession, code_id: uuid.UUID
    ) -> Response[str]:
        return await self._form(request, db, code_id)

    @post("/{code_id:uuid}/reveal", status_code=200)
    async def reveal(
        self, request: Request[Any, Any, Any], db: DbSession, code_id: uuid.UUID
    ) -> Response[str]:
        """Decrypt the code for this user with the stated reason (audited, rate-limited)."""
        reason = values(await read_form(request), "reason")["reason"]
        try:
            code = await custody.reveal(
                db, request.app.state.kernel.keys, code_id, reason, principal_of(request)
            )
        except DomainError as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._form(request, db, code_id, problem=problem, reason=reason, status=status)
        row = await get_code(db, code_id)
        batch = await find_batch(db, row.batch_id)
        ctx = await shell(request, db)
        ctx.update(
            code={
                "id": code.id,
                "masked": row.masked,
                "state": code.state,
                "expires_at": code.expires_at,
            },
            batch=batch,
            product=await get_product(db, batch.product_id),
            revealed={"number": code.number, "pin": code.pin},
            problem=None,
            reason=reason,
            limit=custody.REVEALS_PER_HOUR,
        )
        return render(
            request,
            "console/reveal.html",
            ctx,
            headers={
                "Cache-Control": "no-store, max-age=0",
                "Pragma": "no-cache",
                "Referrer-Policy": "no-referrer",
            },
        )
