"""The risk domain: rules, counters, blocklists, lockouts and flags guarding claims and redemptions."""

import datetime as dt

from core.domains import ADMINS, FINANCE, OPERATORS, Domain, Periodic

domain = Domain(
    name="risk",
    api=("core.risk.api:RiskController",),
    console=("admin_ui.risk_pages:RiskPageController",),
    models=("core.risk.models",),
    jobs=("core.risk.jobs",),
    periodic=(Periodic("purge_risk_counters", "purge_risk_counters", dt.timedelta(hours=6)),),
    events={"risk.flagged": "A risk rule flagged activity (e.g. one device used by many members)."},
    scopes={
        "risk:read": "Read risk rules, refusals and flags.",
        "risk:manage": "Change risk rules, blocklists and lockouts.",
    },
    permissions={"risk.read": OPERATORS | FINANCE, "risk.manage": ADMINS},
)
