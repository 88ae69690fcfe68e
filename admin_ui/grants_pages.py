"""Tenant console grant pages: the grant list, a grant's page (codes masked) with "void" for undelivered
grants, and a simple form that grants codes of a product to a phone or an e-mail."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect

from admin_ui.console_pages import shell
from admin_ui.forms import FormInvalid, FormProblem, problem_of, read_form, values
from admin_ui.i18n import N_
from admin_ui.money import day_filter, end_of_day
from admin_ui.rendering import flash, locale_of, render, translator
from core.catalog.schemas import ProductOut
from core.catalog.services import products_by_id
from core.db.types import DbSession
from core.errors import DomainError
from core.grants import services
from core.grants.models import GRANT_STATUSES
from core.grants.schemas import MAX_GRANT_QUANTITY, GrantRequest
from core.grants.search import grant_search
from tenants.guards import principal_of, provide_db, require_permission

PAGE = 50
UuidQuery = Annotated[uuid.UUID | None, Parameter(required=False)]

GRANT_STATUS_LABELS: dict[str, str] = {
    "created": N_("Created, not sent"),  # not the column header "Created" (创建时间)
    "delivered": N_("Delivered"),
    "delivery_failed": N_("Delivery failed"),
    "partially_redeemed": N_("Partially redeemed"),
    "redeemed": N_("Redeemed"),
    "expired": N_("Expired"),
    "voided": N_("Voided"),
}
ITEM_STATUS_LABELS: dict[str, str] = {
    "held": N_("Held"),
    "redeemed": N_("Redeemed"),
    "transferred": N_("Transferred"),
    "voided": N_("Voided"),
    "expired": N_("Expired"),
}
_EMPTY_FORM = dict.fromkeys(("product_id", "phone", "email", "name", "channel", "campaign_ref"), "") | {
    "quantity": "1"
}
CHANNEL_LABELS: dict[str, str] = {"sms": N_("SMS"), "email": N_("E-mail"), "none": N_("No delivery")}


async def product_names(db: DbSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, ProductOut]:
    """Products by id, for their names in lists (the grant, campaign and member pages)."""
    return await products_by_id(db, ids)


def _failure(exc: Exception, request: Request[Any, Any, Any]) -> tuple[FormProblem, int]:
    status = exc.status if isinstance(exc, DomainError) else 422
    return problem_of(exc, translator(request), locale_of(request)), status


def _labels() -> dict[str, Any]:
    return {
        "grant_labels": GRANT_STATUS_LABELS,
        "item_labels": ITEM_STATUS_LABELS,
        "channel_labels": CHANNEL_LABELS,
    }


class GrantsController(Controller):
    path = "/grants"
    guards = [require_permission("members.read")]
    dependencies = {"db": Provide(provide_db)}

    @get("/")
    async def grants(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        grant_status: Annotated[str | None, Parameter(query="status", required=False, max_length=20)] = None,
        cursor: UuidQuery = None,
        first: Annotated[str | None, Parameter(query="from", required=False, max_length=10)] = None,
        last: Annotated[str | None, Parameter(query="to", required=False, max_length=10)] = None,
        phone: Annotated[str | None, Parameter(required=False, max_length=40)] = None,
        code: Annotated[str | None, Parameter(required=False, max_length=200)] = None,
    ) -> Response[str]:
        """Grants newest first, optionally of one status, created from/to a day (tenant's zone; the overview's
        figures link here), of a member's phone or of a card number."""
        status = grant_status if grant_status in GRANT_STATUSES else None
        search = {"phone": (phone or "").strip(), "code": (code or "").strip()}
        problem: FormProblem | None = None
        ctx = await shell(request, db)
        days = {k: day_filter(v) for k, v in (("from", first), ("to", last))}
        try:
            matching = await grant_search(db, request.app.state.kernel, **search)
            rows = await services.list_grants(
                db, after=cursor, limit=PAGE, status=status, matching=matching,
                created_since=end_of_day(days["from"] - dt.timedelta(days=1), ctx["tz"]) if days["from"] else None,
                created_until=end_of_day(days["to"], ctx["tz"]) if days["to"] else None,
            )
        except DomainError as exc:  # a phone that is not a mobile number
            problem, rows = problem_of(exc, translator(request), locale_of(request)), []
            problem = FormProblem(problem.message, "phone")
        products = await product_names(db, {g.product_id for g in rows})
        ctx.update(
            days={k: v.isoformat() for k, v in days.items() if v},
            search=search,
            problem=problem,
            grants=rows[:PAGE],
            next_cursor=rows[PAGE - 1].id if len(rows) > PAGE else None,
            products=products,
            status=status or "",
            statuses=GRANT_STATUSES,
            **_labels(),
        )
        return render(request, "console/grants/list.html", ctx)

    async def _detail(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        grant_id: uuid.UUID,
        *,
        problem: FormProblem | None = None,
        reason: str = "",
        status: int = 200,
    ) -> Response[str]:
        grant = await services.get_grant(db, grant_id)
        out = await services.grant_out(db, request.app.state.kernel, grant)
        ctx = await shell(request, db)
        ctx.update(
            grant=out,
            product=(await product_names(db, {grant.product_id})).get(grant.product_id),
            voidable=grant.status in services.VOIDABLE_STATUSES,
            problem=problem,
            reason=reason,
            **_labels(),
        )
        return render(request, "console/grants/detail.html", ctx, status=status)

    @get("/{grant_id:uuid}")
    async def grant(
        self, request: Request[Any, Any, Any], db: DbSession, grant_id: uuid.UUID
    ) -> Response[str]:
        """One grant: member, contact (masked), delivery, and its codes masked."""
        return await self._detail(request, db, grant_id)

    @post("/{grant_id:uuid}/void", status_code=303, guards=[require_permission("grants.manage")])
    async def void(
        self, request: Request[Any, Any, Any], db: DbSession, grant_id: uuid.UUID
    ) -> Response[Any]:
        """Void an undelivered grant with a reason; its codes go back to stock."""
        reason = values(await read_form(request), "reason")["reason"]
        try:
            await services.void_grant(db, request.app.state.kernel, grant_id, reason)
        except DomainError as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._detail(request, db, grant_id, problem=problem, reason=reason, status=status)
        flash(request, translator(request).gettext("The grant is voided; its codes are back in stock."))
        return Redirect(f"/console/grants/{grant_id}", status_code=303)

    async def _form(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        *,
        form: dict[str, str] | None = None,
        problem: FormProblem | None = None,
        status: int = 200,
    ) -> Response[str]:
        products = await services.grantable_products(db)
        ctx = await shell(request, db)
        ctx.update(
            products=products,
            form=form or _EMPTY_FORM,
            problem=problem,
            max_quantity=MAX_GRANT_QUANTITY,
            **_labels(),
        )
        return render(request, "console/grants/new.html", ctx, status=status)

    @get("/new", guards=[require_permission("grants.manage")])
    async def new(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        """The "grant codes" form: product, quantity, and a phone or an e-mail."""
        return await self._form(request, db)

    @post("/new", status_code=303, guards=[require_permission("grants.manage")])
    async def create(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        """Grant codes from the console; delivery goes through the outbox like an API grant."""
        form = values(
            await read_form(request),
            "product_id",
            "quantity",
            "phone",
            "email",
            "name",
            "channel",
            "campaign_ref",
        )
        principal = principal_of(request)
        try:
            try:
                product_id = uuid.UUID(form["product_id"])
            except ValueError:
                raise FormInvalid("product_id", N_("Choose a product.")) from None
            try:
                quantity = int(form["quantity"] or "1")
            except ValueError:
                raise FormInvalid("quantity") from None
            data = GrantRequest(
                product_id=product_id,
                quantity=quantity,
                phone=form["phone"] or None,
                email=form["email"] or None,
                name=form["name"] or None,
                channel=form["channel"] or None,
                campaign_ref=form["campaign_ref"] or None,
            )
            grant = await services.create_grant(
                db,
                request.app.state.kernel,
                data,
                source="console",
                user_id=uuid.UUID(principal.subject_id) if principal else None,
                ip=request.client.host if request.client else None,
            )
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._form(request, db, form=form, problem=problem, status=status)
        flash(request, translator(request).gettext("Granted: %(ref)s.") % {"ref": grant.ref})
        return Redirect(f"/console/grants/{grant.id}", status_code=303)
