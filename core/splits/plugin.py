"""The splits domain (declaration; see core/domains.py): split rules and the split ledger."""

from core.domains import ADMINS, EVERYONE, FINANCE, Domain

domain = Domain(
    name="splits",
    api=("core.splits.api:SplitRuleController", "core.splits.api:SplitLedgerController"),
    console=("admin_ui.splits_pages:SplitRulesController",),
    models=("core.splits.models",),
    scopes={
        "splits:read": "Read split rules, their versions, previews and the split ledger's balances.",
        "splits:write": "Create and change split rules (each change is a new version).",
    },
    permissions={"splits.read": EVERYONE, "splits.manage": ADMINS | FINANCE},
)
