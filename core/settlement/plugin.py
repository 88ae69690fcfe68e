"""The settlement domain (declaration; see core/domains.py): statements, reconciliation, settlements."""

from core.domains import ADMINS, EVERYONE, FINANCE, Domain

domain = Domain(
    name="settlement",
    models=("core.settlement.models",),
    scopes={
        "settlement:read": "Read statements, reconciliation results and settlements, and export them.",
        "settlement:write": (
            "Import and fetch statements, reconcile, resolve mismatches, confirm settlements and record payments."
        ),
    },
    permissions={"settlement.read": EVERYONE, "settlement.manage": ADMINS | FINANCE},
)
