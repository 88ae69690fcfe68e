"""Stores (门店) in the console: list, create, edit, deactivate and reactivate; and the redemption report
per store and per clerk. The rules live in :mod:`core.stores` and :mod:`core.redemption.reports`."""

from __future__ import annotations

import datetime as dt
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
from core.redemption import reports
from core.stores import services
from core.stores.schemas import StoreIn, StoreUpdate
from tenants.guards import provide_db, require_permission

FIELDS = ("code", "name", "province", "city", "district", "address", "phone")
EMPTY = dict.fromkeys(FIELDS, "")
DayParam = Annotated[str | None, Parameter(required=False)]
IdParam = Annotated[uuid.UUID | None, Parameter(required=False)]


class StoresController(Controller):
    path = "/stores"
    guards = [require_permission("stores.read")]
    dependencies = {"db": Provide(provide_db)}

    async def _list(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        *,
        form: dict[str, str] | None = None,
        problem: FormProblem | None = None,
        status: int = 200,
    ) -> Response[str]:
        ctx = await shell(request, db)
        ctx.update(stores=await services.list_stores(db), form=form or EMPTY, problem=problem)
        return render(request, "console/stores/list.html", ctx, status=status)

    @get("/")
    async def stores(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        """The tenant's stores, with the form to add one."""
        return await self._list(request, db)

    @post("/", status_code=303, guards=[require_permission("stores.manage")])
    async def create(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        form = values(await read_form(request), *FIELDS)
        try:
            store = await services.create_store(db, _convert(form, StoreIn))
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            return await self._list(
                request, db, form=form, problem=_problem(exc, request), status=_status(exc)
            )
        flash(request, translator(request).gettext("Store %(name)s added.") % {"name": store.name})
        return Redirect("/console/stores", status_code=303)

    async def _edit(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        store_id: uuid.UUID,
        *,
        form: dict[str, str] | None = None,
        problem: FormProblem | None = None,
        status: int = 200,
    ) -> Response[str]:
        store = await services.get_store(db, store_id)
        ctx = await shell(request, db)
        ctx.update(store=store, form=form or {f: getattr(store, f) for f in FIELDS}, problem=problem)
        return render(request, "console/stores/edit.html", ctx, status=status)

    @get("/{store_id:uuid}")
    async def edit_page(
        self, request: Request[Any, Any, Any], db: DbSession, store_id: uuid.UUID
    ) -> Response[str]:
        return await self._edit(request, db, store_id)

    @post("/{store_id:uuid}", status_code=303, guards=[require_permission("stores.manage")])
    async def update(
        self, request: Request[Any, Any, Any], db: DbSession, store_id: uuid.UUID
    ) -> Response[Any]:
        form = values(await read_form(request), *FIELDS)
        try:
            store = await services.update_store(db, store_id, _convert(form, StoreUpdate))
        except (DomainError, FormInvalid) as exc:
            if isinstance(exc, DomainError) and exc.status == 404:
                raise
            await db.rollback()
            problem = _problem(exc, request)
            return await self._edit(request, db, store_id, form=form, problem=problem, status=_status(exc))
        flash(request, translator(request).gettext("Store %(name)s saved.") % {"name": store.name})
        return Redirect("/console/stores", status_code=303)

    @post("/{store_id:uuid}/deactivate", status_code=303, guards=[require_permission("stores.manage")])
    async def deactivate(
        self, request: Request[Any, Any, Any], db: DbSession, store_id: uuid.UUID
    ) -> Redirect:
        store = await services.set_active(db, store_id, False)
        flash(request, translator(request).gettext("Store %(name)s deactivated.") % {"name": store.name})
        return Redirect("/console/stores", status_code=303)

    @post("/{store_id:uuid}/activate", status_code=303, guards=[require_permission("stores.manage")])
    async def activate(self, request: Request[Any, Any, Any], db: DbSession, store_id: uuid.UUID) -> Redirect:
        store = await services.set_active(db, store_id, True)
        flash(request, translator(request).gettext("Store %(name)s activated.") % {"name": store.name})
        return Redirect("/console/stores", status_code=303)


def _convert(form: dict[str, str], typ: Any) -> Any:
    """The form as ``typ``; a bad store code says what a code may hold."""
    try:
        return convert(form, typ)
    except FormInvalid as exc:
        if exc.field == "code":
            raise FormInvalid("code", N_("A store code is 1 to 20 letters, digits, - or _.")) from None
        raise


def _problem(exc: Exception, request: Request[Any, Any, Any]) -> FormProblem:
    return problem_of(exc, translator(request), locale_of(request))


def _status(exc: Exception) -> int:
    return exc.status if isinstance(exc, DomainError) else 422


def _day(text: str | None, default: dt.date) -> dt.date | None:
    if not text:
        return default
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


class RedemptionReportController(Controller):
    """Redemptions per store and per clerk over a date range (tenant time zone)."""

    path = "/reports/redemptions"
    guards = [require_permission("stores.read")]
    dependencies = {"db": Provide(provide_db)}

    @get("/")
    async def report(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        first: Annotated[str | None, Parameter(query="from", required=False)] = None,
        last: Annotated[str | None, Parameter(query="to", required=False)] = None,
        store_id: IdParam = None,
    ) -> Response[str]:
        """This month so far by default; ``from``/``to`` are dates (inclusive)."""
        ctx = await shell(request, db)
        today = reports.today_in(ctx["tz"])
        start, end = _day(first, today.replace(day=1)), _day(last, today)
        problem, summary, status = None, None, 200
        if start is None or end is None:
            problem = FormProblem(translator(request).gettext("Enter the dates as YYYY-MM-DD."), "from")
            status = 422
        else:
            try:
                summary = await reports.summary(db, start, end, store_id=store_id)
            except DomainError as exc:
                problem, status = _problem(exc, request), exc.status
        ctx.update(
            summary=summary,
            problem=problem,
            form={"from": first or str(start or ""), "to": last or str(end or ""), "store_id": store_id},
            stores=await services.list_stores(db),
        )
        return render(request, "console/stores/report.html", ctx, status=status)
