"""The settlement domain (declaration; see core/domains.py): statements, reconciliation, settlements."""

from core.domains import ADMINS, EVERYONE, FINANCE, Domain

domain = Domain(
    name="settlement",
    models=("core.settlement.models",),
    api=(
        "core.settlement.recon_api:ReconciliationController",
        "core.settlement.recon_api:ReconItemController",
        "core.settlement.settlements_api:SettlementController",
        "core.settlement.settlements_api:SettlementBalanceController",
        "core.settlement.statements_api:StatementsController",
        "core.settlement.statements_api:StatementMappingsController",
    ),
    console=(
        "admin_ui.reconciliation_pages:ReconciliationPages",
        "admin_ui.settlements_pages:SettlementsController",
        "admin_ui.statements_pages:StatementsPagesController",
    ),
    jobs=("core.settlement.statement_jobs",),
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
