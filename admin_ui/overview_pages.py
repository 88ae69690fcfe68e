"""Tenant console overview (数据概览, ``/console``): today's and this week's figures, each a link to the list
that explains it, trend charts of the last 14 or 30 days drawn as inline SVG on the server, the plan's quotas,
and for a new tenant the next steps.

Figures come from :func:`core.kpis.overview.overview` (SQL aggregates), asked only for the sections the
user's role may read; charts from :mod:`core.kpis.charts`.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect
from markupsafe import Markup

from admin_ui.console_pages import shell
from admin_ui.forms import problem_of
from admin_ui.i18n import N_
from admin_ui.kpis_pages import percent
from admin_ui.money import format_money
from admin_ui.rendering import locale_of, render, translator
from core.db.types import DbSession
from core.errors import DomainError
from core.kpis import overview as service
from core.kpis.charts import Series, line_chart
from tenants import registry
from tenants.guards import principal_of, provide_db, require_permission
from tenants.models import CLERK
from tenants.scopes import role_can

#: What each section of the overview needs the user's role to be allowed.
SECTION_PERMISSIONS = {"grants": "members.read", "stock": "inventory.read", "channels": "channel_orders.read"}


def _charts(request: Request[Any, Any, Any], report: service.Overview) -> dict[str, Markup]:
    t = translator(request)
    labels = [d.day[5:] for d in report.trend]
    tick = 7 if report.trend_days > 14 else 2
    charts: dict[str, Markup] = {}
    title = t.gettext("Last %(n)s days") % {"n": report.trend_days}
    if "grants" in report.sections:
        charts["activity"] = Markup(line_chart(  # the chart functions escape every text they draw
            "chart-activity", f"{t.gettext('Grants and redemptions per day')} · {title}", labels,
            [Series(t.gettext("Grants made"), [d.grants for d in report.trend]),
             Series(t.gettext("Redemptions"), [d.redemptions for d in report.trend])],
            tick_every=tick, mark_peaks=True))
    if "channels" in report.sections:
        charts["sales"] = Markup(line_chart(
            "chart-sales", f"{t.gettext('Channel sales per day, net of refunds')} · {title}", labels,
            [Series(t.gettext("Net sales"), [d.channel_net_fen for d in report.trend])], format_money,
            tick_every=tick, mark_peaks=True))
    return charts


_READ_TENANT = require_permission("tenant.read")


async def _dashboard_guard(connection: Any, handler: Any) -> None:
    """``tenant.read``; a clerk passes too, to be sent to the redeem page (their console)."""
    p = principal_of(connection)
    if p is None or p.kind != "user" or p.role != CLERK:
        await _READ_TENANT(connection, handler)


class DashboardController(Controller):
    path = "/"
    guards = [_dashboard_guard]
    dependencies = {"db": Provide(provide_db)}

    @get("/")
    async def dashboard(
        self, request: Request[Any, Any, Any], db: DbSession,
        days: Annotated[str | None, Parameter(required=False, max_length=5)] = None,
    ) -> Response[Any]:
        """The overview: figures of today and this week, trends, quotas; next steps for a new tenant."""
        ctx = await shell(request, db)
        if ctx["me"].role == CLERK:  # a clerk's console is the redeem page
            return Redirect("/console/redeem", status_code=303)
        problem, status, window = None, 200, service.TREND_WINDOWS[0]
        if days:
            try:
                window = service.trend_window(int(days) if days.isdigit() else -1)
            except DomainError as exc:
                problem, status = problem_of(exc, translator(request), locale_of(request)), exc.status
        role = ctx["me"].role
        sections = [s for s, perm in SECTION_PERMISSIONS.items() if role_can(role, perm)]
        report = await service.overview(db, sections, days=window)
        used = await registry.quota_usage(db, ctx["tenant"].id)
        plan = ctx["plan"]
        ctx.update(
            report=report, charts=_charts(request, report), windows=service.TREND_WINDOWS, window=window,
            problem=problem, percent=percent, expiry_days=service.EXPIRY_DAYS,
            quotas=[
                {"label": N_("Users"), "used": used["users"], "limit": plan.max_users},
                {"label": N_("API clients"), "used": used["api_clients"], "limit": plan.max_api_clients},
            ],
        )
        return render(request, "console/dashboard.html", ctx, status=status)
