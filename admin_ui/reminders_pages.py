"""Tenant console "Expiry reminders" page (沉睡券提醒): the tenant's reminder setting (days before expiry,
on/off), editable by owners and admins, and the code units members were recently reminded of (contacts
masked, paged).

Everything goes through :mod:`core.reminders.services`, the same services as ``/api/v1/reminder-settings``.
The reminders themselves are sent by the hourly ``remind_expiring_codes`` job; there is no "run now".
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect

from admin_ui.console_pages import shell
from admin_ui.forms import FormProblem, problem_of, read_form, values
from admin_ui.grants_pages import ITEM_STATUS_LABELS
from admin_ui.i18n import N_
from admin_ui.rendering import flash, locale_of, render, translator
from core.db.types import DbSession
from core.errors import DomainError, ValidationFailed
from core.reminders import services
from core.reminders.services import MAX_DAYS_BEFORE, ReminderSettingIn
from tenants.guards import provide_db, require_permission
from tenants.scopes import role_can

#: Seeing the page: whoever grants codes. Changing the setting: owners and admins.
VIEW_PERMISSION = "grants.manage"
MANAGE_PERMISSION = "reminders.manage"
PAGE = 50
CHANNEL_LABELS: dict[str, str] = {"sms": N_("SMS"), "email": N_("E-mail")}
DAYS_MESSAGE = N_("Enter a whole number of days from 1 to %(max)s.")


class BadDays(Exception):
    """The days field is not a whole number (or is out of range, as the service says)."""


def _days(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise BadDays from None


class RemindersController(Controller):
    path = "/reminders"
    guards = [require_permission(VIEW_PERMISSION)]
    dependencies = {"db": Provide(provide_db)}

    async def _page(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        *,
        cursor: uuid.UUID | None = None,
        form: dict[str, Any] | None = None,
        problem: FormProblem | None = None,
        status: int = 200,
    ) -> Response[str]:
        setting = await services.get_setting(db)
        page = await services.list_sent(db, after=cursor, limit=PAGE)
        ctx = await shell(request, db)
        ctx.update(
            setting=setting,
            form=form or {"days_before": str(setting.days_before), "enabled": setting.enabled},
            manage=role_can(ctx["me"].role, MANAGE_PERMISSION),
            problem=problem,
            reminders=page.items,
            next_cursor=page.next_cursor,
            first_page=cursor is None,
            max_days=MAX_DAYS_BEFORE,
            item_labels=ITEM_STATUS_LABELS,
            channel_labels=CHANNEL_LABELS,
        )
        return render(request, "console/reminders.html", ctx, status=status)

    @get("/")
    async def index(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        cursor: Annotated[uuid.UUID | None, Parameter(required=False)] = None,
    ) -> Response[str]:
        """The setting and the latest reminders (``cursor`` pages to older ones)."""
        return await self._page(request, db, cursor=cursor)

    @post("/settings", status_code=303, guards=[require_permission(MANAGE_PERMISSION)])
    async def save(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        """Change the number of days before expiry and the on/off switch."""
        raw = await read_form(request)
        form: dict[str, Any] = {**values(raw, "days_before"), "enabled": raw.get("enabled") == "1"}
        t = translator(request)
        try:
            data = ReminderSettingIn(days_before=_days(form["days_before"]), enabled=form["enabled"])
            setting = await services.set_setting(db, data)
        except (BadDays, ValidationFailed) as exc:
            await db.rollback()
            if isinstance(exc, ValidationFailed) and not any(e.field == "days_before" for e in exc.errors):
                problem = problem_of(exc, t, locale_of(request))
            else:
                problem = FormProblem(t.gettext(DAYS_MESSAGE) % {"max": MAX_DAYS_BEFORE}, "days_before")
            return await self._page(request, db, form=form, problem=problem, status=422)
        except DomainError as exc:
            await db.rollback()
            problem = problem_of(exc, t, locale_of(request))
            return await self._page(request, db, form=form, problem=problem, status=exc.status)
        if setting.enabled:
            message = t.ngettext(
                "Saved: members are reminded %(num)s day before their codes expire.",
                "Saved: members are reminded %(num)s days before their codes expire.",
                setting.days_before,
            ) % {"num": setting.days_before}
        else:
            message = t.gettext("Saved: expiry reminders are off.")
        flash(request, message)
        return Redirect("/console/reminders", status_code=303)
