"""The kpis domain (declaration; see core/domains.py): consignment KPIs per channel and overall."""

from core.domains import EVERYONE, Domain

domain = Domain(
    name="kpis",
    scopes={"kpis:read": "Read the consignment KPIs per channel and overall."},
    permissions={"kpis.read": EVERYONE},
)
