"""Tenant console "Channel KPIs" page (``/console/kpis``): cards with flags, server-drawn SVG charts, the
per-channel table and breakage by age, for a window of 7, 30, 90 or 365 days.

Figures come from :mod:`core.kpis.queries` (the same services as ``/api/v1/kpis``); charts from
:mod:`core.kpis.charts`.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.di import Provide
from litestar.params import Parameter
from markupsafe import Markup

from admin_ui.console_pages import shell
from admin_ui.forms import problem_of
from admin_ui.i18n import N_
from admin_ui.money import format_money
from admin_ui.rendering import locale_of, render, translator
from core.db.types import DbSession
from core.errors import DomainError
from core.kpis import queries
from core.kpis.charts import Series, bar_chart, line_chart
from core.kpis.schemas import BREAKAGE_BUCKETS, BreakageReport, KpiReport, Ratio
from tenants.guards import provide_db, require_permission

BUCKET_LABELS: dict[str, str] = {
    "0-30": N_("0–30 days"),
    "31-90": N_("31–90 days"),
    "91-180": N_("91–180 days"),
    "180+": N_("Over 180 days"),
    "expired": N_("Expired"),
}
assert set(BUCKET_LABELS) == set(BREAKAGE_BUCKETS)


def percent(ratio: Ratio) -> str:
    """``0.1234`` → ``12.34%``; a dash when undefined."""
    if ratio.denominator == 0:
        return "—"
    basis = ratio.numerator * 10_000
    hundredths = (abs(basis) + ratio.denominator // 2) // ratio.denominator
    sign = "-" if basis < 0 else ""
    return f"{sign}{hundredths // 100}.{hundredths % 100:02d}%"


def times(ratio: Ratio) -> str:
    """Turnover ``3.2`` → ``3.20×``; a dash when there is no stock."""
    if ratio.denominator == 0:
        return "—"
    hundredths = (ratio.numerator * 100 + ratio.denominator // 2) // ratio.denominator
    return f"{hundredths // 100}.{hundredths % 100:02d}×"


def _charts(request: Request[Any, Any, Any], report: KpiReport, breakage: BreakageReport) -> dict[str, Markup]:
    t = translator(request)
    days = [p.day for p in report.overall.daily]
    sales = line_chart(
        "chart-daily", t.gettext("Sales per day"), [d[5:] for d in days],
        [Series(t.gettext("Gross"), [p.gross_fen for p in report.overall.daily]),
         Series(t.gettext("Net of refunds"), [p.net_fen for p in report.overall.daily])], format_money)
    channels = bar_chart(
        "chart-channels", t.gettext("Net sales by channel"), [c.account_name for c in report.channels],
        [c.net_fen for c in report.channels], format_money,
        flagged=[c.split_cost.flagged for c in report.channels], width=480)
    ages = bar_chart(
        "chart-breakage", t.gettext("Unredeemed value by age"),
        [t.gettext(BUCKET_LABELS[b.bucket]) for b in breakage.overall.buckets],
        [b.value_fen for b in breakage.overall.buckets], format_money, width=320)
    # the chart functions escape every text they draw
    return {"sales": Markup(sales), "channels": Markup(channels), "ages": Markup(ages)}


class KpisController(Controller):
    path = "/kpis"
    guards = [require_permission("kpis.read")]
    dependencies = {"db": Provide(provide_db)}

    @get("/")
    async def kpis(
        self, request: Request[Any, Any, Any], db: DbSession,
        days: Annotated[str | None, Parameter(required=False, max_length=5)] = None,
    ) -> Response[str]:
        """The KPIs of the orders placed in the window, per channel and overall, with charts."""
        problem, status, window = None, 200, 30
        if days:
            try:
                window = queries.window_days(int(days) if days.isdigit() else -1)
            except DomainError as exc:
                problem, status = problem_of(exc, translator(request), locale_of(request)), exc.status
        report = await queries.kpis(db, window)
        breakage = await queries.breakage(db)
        ctx = await shell(request, db)
        ctx.update(report=report, breakage=breakage, windows=queries.WINDOWS, window=window, problem=problem,
                   charts=_charts(request, report, breakage), percent=percent, times=times,
                   bucket_labels=BUCKET_LABELS, tab="kpis")
        return render(request, "console/kpis/index.html", ctx, status=status)
