"""The kpis domain (declaration; see core/domains.py): consignment KPIs per channel and overall."""

from core.domains import EVERYONE, Domain

domain = Domain(
    name="kpis",
    api=("core.kpis.api:KpiController",),
    console=("admin_ui.kpis_pages:KpisController",),
    scopes={"kpis:read": "Read the consignment KPIs per channel and overall."},
    permissions={"kpis.read": EVERYONE},
)
