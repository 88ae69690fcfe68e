"""KPIs API: ``/api/v1/kpis`` (overall and per channel, for a window of 7, 30, 90 or 365 days) and
``/api/v1/kpis/breakage`` (value sold but never redeemed, by age)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.kpis import queries
from core.kpis.schemas import BreakageReport, KpiReport
from tenants.guards import provide_db, require_scope


class KpiController(Controller):
    path = "/api/v1/kpis"
    tags = ["kpis"]
    dependencies = {"db": Provide(provide_db)}

    @get("/", guards=[require_scope("kpis:read")])
    async def report(self, db: AsyncSession, days: Annotated[int, Parameter(ge=1, le=365)] = 30) -> KpiReport:
        """KPIs of the orders placed in the last ``days`` (7, 30, 90 or 365) days; ``422 kpi_window_unknown``."""
        return await queries.kpis(db, queries.window_days(days))

    @get("/breakage", guards=[require_scope("kpis:read")])
    async def breakage(self, db: AsyncSession) -> BreakageReport:
        """Value sold but never redeemed, per channel and overall, by age since the sale."""
        return await queries.breakage(db)
