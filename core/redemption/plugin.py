"""The redemption domain: validate and redeem (核销), rollback, stored-value accounts."""

from core.domains import ADMINS, CLERKS, OPERATORS, Domain

domain = Domain(
    name="redemption",
    api=("core.redemption.api:RedemptionController",),
    console=("admin_ui.redemption_pages:RedeemController",),
    models=("core.redemption.models",),
    events={
        "code.redeemed": "A code was redeemed (核销), or part of a stored-value balance was spent.",
        "code.redemption_rolled_back": "A redemption was rolled back within the rollback window.",
    },
    scopes={
        "redemptions:read": "List redemptions and stored-value ledgers.",
        "redemptions:write": "Validate and redeem codes, and roll redemptions back within the window.",
    },
    permissions={"redemptions.redeem": OPERATORS | CLERKS, "redemptions.rollback": ADMINS},
    provides={
        "inventory.batch_stocked": ("core.redemption.opening:batch_stocked",),
        "grants.item_used": ("core.redemption.usage:item_used",),
    },
)
