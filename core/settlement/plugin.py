"""The settlement domain (declaration; see core/domains.py): statements, reconciliation, settlements."""

from core.domains import ADMINS, EVERYONE, FINANCE, Domain

domain = Domain(
    name="settlement",
    api=(
        "core.settlement.recon_api:ReconciliationController",
        "core.settlement.recon_api:ReconItemController",
    ),
    console=("admin_ui.reconciliation_pages:ReconciliationPages",),
    models=("core.settlement.models",),
    events={
        "settlement.ready": (
            "A channel account's period reconciled with no open item: its settlement can be confirmed."
        ),
        "reconciliation.mismatch": (
            "A reconciliation run found statement lines or order lines that do not match (counts per class)."
        ),
    },
    scopes={
        "settlement:read": "Read statements, reconciliation results and settlements, and export them.",
        "settlement:write": (
            "Import and fetch statements, reconcile, resolve mismatches, confirm settlements and record payments."
        ),
    },
    permissions={"settlement.read": EVERYONE, "settlement.manage": ADMINS | FINANCE},
)
