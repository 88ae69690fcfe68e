"""Tenant console "Channel orders" pages: per-channel sales today, this week and this month; the orders
with their state (by status); one order with its lines, masked codes and refunds, and "deliver again" for a
failed one.

Everything goes through the services behind ``/api/v1/channel-orders`` (:mod:`core.channel_orders.queries`
and :func:`core.channel_orders.delivery.retry_order`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect

from admin_ui.console_pages import shell
from admin_ui.forms import FormInvalid, convert, problem_of, read_form, values
from admin_ui.i18n import N_
from admin_ui.money import day_filter, end_of_day
from admin_ui.rendering import flash, locale_of, render, translator
from core.channel_orders import queries
from core.channel_orders.complaints import (
    COMPLAINT_CATEGORIES,
    ComplaintIn,
    list_complaints,
    record_complaint,
)
from core.channel_orders.delivery import retry_order
from core.channel_orders.models import LINE_CODE_STATES, ORDER_STATUSES
from core.db.types import DbSession
from core.errors import DomainError
from tenants.guards import provide_db, require_permission

PAGE = 50
VIEW = "channel_orders.read"
MANAGE = "channel_orders.manage"

ORDER_STATUS_LABELS: dict[str, str] = {
    "received": N_("Received"),
    "fulfilled": N_("Fulfilled"),
    "failed": N_("Failed: needs a person"),
    "refused": N_("Refused"),
    "partially_refunded": N_("Partially refunded"),
    "refunded": N_("Refunded"),
    "cancelled": N_("Cancelled"),
}
CODE_STATE_LABELS: dict[str, str] = {
    "issued": N_("Allocated"),
    "delivered": N_("With the channel"),
    "redeemed": N_("Redeemed"),
    "returned": N_("Back in stock"),
    "voided": N_("Voided"),
}
REFUSAL_LABELS: dict[str, str] = {
    "unknown_sku": N_("No listing for this SKU"),
    "listing_paused": N_("The listing is paused"),
    "quota_exhausted": N_("The listing's quota is used up"),
    "out_of_stock": N_("Out of stock"),
    "bad_line": N_("The order has a bad line"),
    "risk": N_("Refused by the risk rules"),
    "product_inactive": N_("The product is not on sale"),
}
SOURCE_LABELS: dict[str, str] = {"callback": N_("Callback"), "poll": N_("Polling"), "issue": N_("Code request")}
VIA_LABELS: dict[str, str] = {"kaquan": N_("in a store (kaquan)"), "channel": N_("on the channel")}
COMPLAINT_LABELS: dict[str, str] = {
    "delivery": N_("Codes late or not received"),
    "code_invalid": N_("A code did not work"),
    "refund": N_("Refund dispute"),
    "service": N_("Service"),
    "description": N_("Not as described"),
    "other": N_("Other"),
}

assert set(ORDER_STATUS_LABELS) == set(ORDER_STATUSES) and set(CODE_STATE_LABELS) == set(LINE_CODE_STATES)
assert set(COMPLAINT_LABELS) == set(COMPLAINT_CATEGORIES)


def _labels() -> dict[str, Any]:
    return {
        "order_labels": ORDER_STATUS_LABELS,
        "code_labels": CODE_STATE_LABELS,
        "refusal_labels": REFUSAL_LABELS,
        "source_labels": SOURCE_LABELS,
        "via_labels": VIA_LABELS,
        "complaint_labels": COMPLAINT_LABELS,
    }


class ChannelOrdersController(Controller):
    path = "/channel-orders"
    guards = [require_permission(VIEW)]
    dependencies = {"db": Provide(provide_db)}

    @get("/")
    async def orders(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        order_status: Annotated[str | None, Parameter(query="status", required=False, max_length=20)] = None,
        account: Annotated[uuid.UUID | None, Parameter(required=False)] = None,
        cursor: Annotated[uuid.UUID | None, Parameter(required=False)] = None,
        first: Annotated[str | None, Parameter(query="from", required=False, max_length=10)] = None,
        last: Annotated[str | None, Parameter(query="to", required=False, max_length=10)] = None,
    ) -> Response[str]:
        """Per-channel sales, then the orders newest first (of one status, of one channel account, placed
        from/to a day in the tenant's zone: the overview's sales figures link here)."""
        status = order_status if order_status in ORDER_STATUSES else None
        ctx = await shell(request, db)
        days = {k: day_filter(v) for k, v in (("from", first), ("to", last))}
        page = await queries.list_orders(
            db, cursor=cursor, limit=PAGE, account_id=account, status=status,
            placed_since=end_of_day(days["from"] - dt.timedelta(days=1), ctx["tz"]) if days["from"] else None,
            placed_until=end_of_day(days["to"], ctx["tz"]) if days["to"] else None,
        )
        ctx.update(
            days={k: v.isoformat() for k, v in days.items() if v},
            sales=await queries.sales_report(db),
            orders=page.items,
            next_cursor=page.next_cursor,
            status=status or "",
            account=str(account) if account else "",
            statuses=ORDER_STATUSES,
            **_labels(),
        )
        return render(request, "console/channel_orders/list.html", ctx)

    @get("/{order_id:uuid}")
    async def order(self, request: Request[Any, Any, Any], db: DbSession, order_id: uuid.UUID) -> Response[str]:
        """One order: lines (gross, cost, split rule), masked codes and their fate, refunds."""
        ctx = await shell(request, db)
        ctx.update(order=await queries.get_order(db, order_id), problem=None, **_labels(),
                   complaints=await list_complaints(db, order_id), complaint_problem=None)
        return render(request, "console/channel_orders/detail.html", ctx)

    @post("/{order_id:uuid}/retry", status_code=303, guards=[require_permission(MANAGE)])
    async def retry(self, request: Request[Any, Any, Any], db: DbSession, order_id: uuid.UUID) -> Response[Any]:
        """Deliver a failed order's codes to its channel again."""
        t = translator(request)
        try:
            await retry_order(db, order_id)
        except DomainError as exc:
            await db.rollback()
            problem = problem_of(exc, t, locale_of(request))
            ctx = await shell(request, db)
            ctx.update(order=await queries.get_order(db, order_id), problem=problem, **_labels(),
                       complaints=await list_complaints(db, order_id), complaint_problem=None)
            return render(request, "console/channel_orders/detail.html", ctx, status=exc.status)
        flash(request, t.gettext("The delivery was queued again."))
        return Redirect(f"/console/channel-orders/{order_id}", status_code=303)

    @post("/{order_id:uuid}/complaints", status_code=303, guards=[require_permission(MANAGE)])
    async def complain(self, request: Request[Any, Any, Any], db: DbSession, order_id: uuid.UUID) -> Response[Any]:
        """Record a buyer's complaint on the order (counted in the channel's complaint rate)."""
        t = translator(request)
        form = values(await read_form(request), "category", "note")
        try:
            await record_complaint(db, order_id, convert(form, ComplaintIn))
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            ctx = await shell(request, db)
            ctx.update(order=await queries.get_order(db, order_id), problem=None, **_labels(),
                       complaints=await list_complaints(db, order_id),
                       complaint_problem=problem_of(exc, t, locale_of(request)), complaint_form=form)
            return render(request, "console/channel_orders/detail.html", ctx,
                          status=exc.status if isinstance(exc, DomainError) else 422)
        flash(request, t.gettext("The complaint was recorded."))
        return Redirect(f"/console/channel-orders/{order_id}", status_code=303)
