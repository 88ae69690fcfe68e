"""Tenant console webhook pages (permission ``webhooks.manage``): subscriptions with the signing secret shown
once on creation or rotation (pages are never cached), each subscription's delivery log (status, attempts,
response) and "Resend".

The rules live in :mod:`core.webhooks.services`; these controllers read forms and render.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect

from admin_ui.console_pages import shell
from admin_ui.forms import FormInvalid, FormProblem, convert, problem_of, read_form, values
from admin_ui.i18n import N_
from admin_ui.rendering import flash, locale_of, render, translator
from core.db.types import DbSession
from core.errors import DomainError
from core.events.services import EVENT_TYPES
from core.webhooks import services
from core.webhooks.models import DELIVERY_STATUSES
from core.webhooks.probe import send_test
from core.webhooks.schemas import WebhookCreate, WebhookTestResult, WebhookUpdate
from tenants.guards import provide_db, require_permission

DELIVERY_PAGE = 50
DELIVERY_STATUS_LABELS: dict[str, str] = {
    "pending": N_("Retrying"),
    "succeeded": N_("Delivered"),
    "failed": N_("Failed"),
    "gave_up": N_("Gave up"),
}
SUBSCRIPTION_STATUS_LABELS: dict[str, str] = {"active": N_("Sending"), "inactive": N_("Paused")}
_TEST_ERRORS: tuple[tuple[str, str], ...] = (  # the delivery code's error, as a shop owner reads it
    ("DNS:", N_("The endpoint's host name could not be resolved.")),
    ("ConnectTimeout", N_("The endpoint did not answer within 10 seconds.")),
    ("ReadTimeout", N_("The endpoint did not answer within 10 seconds.")),
    ("ConnectError", N_("Could not connect to the endpoint (refused or unreachable).")),
)


def test_message(request: Request[Any, Any, Any], result: WebhookTestResult) -> tuple[str, str]:
    """(flash text, kind) of a test send: the HTTP status and time, or what went wrong, readably."""
    t = translator(request)
    if result.success:
        text = t.gettext("Test event delivered: HTTP %(status)s in %(ms)s ms.")
        return text % {"status": result.status_code, "ms": result.duration_ms}, "success"
    if result.status_code is not None:
        text = t.gettext("Test event not accepted: the endpoint answered HTTP %(status)s in %(ms)s ms.")
        return text % {"status": result.status_code, "ms": result.duration_ms}, "error"
    error = result.error or ""
    reason = next((t.gettext(msg) for prefix, msg in _TEST_ERRORS if error.startswith(prefix)), None)
    if reason is None:
        reason = t.gettext("The request failed: %(error)s") % {"error": error}
    return t.gettext("Test event not delivered.") + " " + reason, "error"


def _failure(exc: Exception, request: Request[Any, Any, Any]) -> tuple[FormProblem, int]:
    status = exc.status if isinstance(exc, DomainError) else 422
    return problem_of(exc, translator(request), locale_of(request)), status


def _private_ok(request: Request[Any, Any, Any]) -> bool:
    return services.allow_private(request.app.state.kernel.settings)


def _form(raw: Any) -> dict[str, Any]:
    events = [e for e in raw.getall("events", []) if isinstance(e, str)]
    return {**values(raw, "url", "description"), "events": events, "active": raw.get("active") == "on"}


class WebhooksController(Controller):
    path = "/webhooks"
    guards = [require_permission("webhooks.manage")]
    dependencies = {"db": Provide(provide_db)}

    async def _list(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        *,
        form: dict[str, Any] | None = None,
        problem: FormProblem | None = None,
        created: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response[str]:
        ctx = await shell(request, db)
        ctx.update(
            subscriptions=(await services.list_subscriptions(db, None, services.MAX_SUBSCRIPTIONS)).items,
            event_types=EVENT_TYPES,
            form=form or {"url": "", "description": "", "events": [], "active": True},
            problem=problem,
            created=created,
            sub_labels=SUBSCRIPTION_STATUS_LABELS,
        )
        return render(request, "console/webhooks/list.html", ctx, status=status)

    @get("/")
    async def webhooks(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        return await self._list(request, db)

    @post("/", status_code=200)
    async def create(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        """Create a subscription; its signing secret is shown on this response only."""
        form = _form(await read_form(request))
        try:
            data = convert(form, WebhookCreate)
            cipher = await request.app.state.kernel.keys.cipher(db)
            created = await services.create_subscription(db, cipher, data, private_ok=_private_ok(request))
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._list(request, db, form=form, problem=problem, status=status)
        shown = {
            "id": str(created.subscription.id),
            "url": created.subscription.url,
            "secret": created.secret,
        }
        return await self._list(request, db, created=shown)

    async def _detail(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        webhook_id: uuid.UUID,
        *,
        cursor: uuid.UUID | None = None,
        status_filter: str | None = None,
        problem: FormProblem | None = None,
        rotated: str | None = None,
        status: int = 200,
    ) -> Response[str]:
        subscription = services.subscription_out(await services.get_subscription(db, webhook_id))
        page = await services.list_deliveries(
            db, webhook_id, status=status_filter, cursor=cursor, limit=DELIVERY_PAGE
        )
        ctx = await shell(request, db)
        ctx.update(
            sub=subscription,
            deliveries=page.items,
            next_cursor=page.next_cursor,
            status_filter=status_filter or "",
            statuses=DELIVERY_STATUSES,
            delivery_labels=DELIVERY_STATUS_LABELS,
            sub_labels=SUBSCRIPTION_STATUS_LABELS,
            event_types=EVENT_TYPES,
            problem=problem,
            rotated=rotated,
        )
        return render(request, "console/webhooks/detail.html", ctx, status=status)

    @get("/{webhook_id:uuid}")
    async def detail(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        webhook_id: uuid.UUID,
        cursor: Annotated[uuid.UUID | None, Parameter(required=False)] = None,
        delivery_status: Annotated[str | None, Parameter(query="status", required=False)] = None,
    ) -> Response[str]:
        """The subscription and its delivery log, newest first."""
        status_filter = delivery_status if delivery_status in DELIVERY_STATUSES else None
        return await self._detail(request, db, webhook_id, cursor=cursor, status_filter=status_filter)

    @post("/{webhook_id:uuid}", status_code=200)
    async def update(
        self, request: Request[Any, Any, Any], db: DbSession, webhook_id: uuid.UUID
    ) -> Response[Any]:
        """Change the URL, events, description and the active flag."""
        form = _form(await read_form(request))
        try:
            data = convert(form, WebhookUpdate)
            await services.update_subscription(db, webhook_id, data, private_ok=_private_ok(request))
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._detail(request, db, webhook_id, problem=problem, status=status)
        flash(request, translator(request).gettext("The webhook is saved."))
        return Redirect(f"/console/webhooks/{webhook_id}", status_code=303)

    @post("/{webhook_id:uuid}/test", status_code=303)
    async def test_send(self, request: Request[Any, Any, Any], webhook_id: uuid.UUID) -> Redirect:
        """Send a signed ``webhook.test`` event now; the answer is flashed on the delivery log page."""
        result = await send_test(request.app.state.kernel, webhook_id, private_ok=_private_ok(request))
        flash(request, *test_message(request, result))
        return Redirect(f"/console/webhooks/{webhook_id}", status_code=303)

    @post("/{webhook_id:uuid}/rotate", status_code=200)
    async def rotate(
        self, request: Request[Any, Any, Any], db: DbSession, webhook_id: uuid.UUID
    ) -> Response[str]:
        """A new signing secret, shown on this response only."""
        cipher = await request.app.state.kernel.keys.cipher(db)
        rotated = await services.rotate_secret(db, cipher, webhook_id)
        return await self._detail(request, db, webhook_id, rotated=rotated.secret)

    @post("/{webhook_id:uuid}/delete", status_code=303)
    async def remove(
        self, request: Request[Any, Any, Any], db: DbSession, webhook_id: uuid.UUID
    ) -> Redirect:
        await services.delete_subscription(db, webhook_id)
        flash(request, translator(request).gettext("The webhook is deleted."))
        return Redirect("/console/webhooks", status_code=303)

    @post("/deliveries/{delivery_id:uuid}/resend", status_code=303)
    async def resend(
        self, request: Request[Any, Any, Any], db: DbSession, delivery_id: uuid.UUID
    ) -> Response[Any]:
        """Send a finished delivery again and return to its subscription's log."""
        delivery = await services.get_delivery(db, delivery_id)
        t = translator(request)
        try:
            await services.resend(db, delivery_id)
        except DomainError as exc:
            await db.rollback()
            flash(request, exc.detail(locale_of(request)), "error")
        else:
            flash(request, t.gettext("The delivery will be sent again shortly."))
        return Redirect(f"/console/webhooks/{delivery.subscription_id}", status_code=303)
