"""The stores domain: the tenant's stores (门店) and the clerks (核销员) bound to them."""

from core.domains import ADMINS, EVERYONE, Domain

domain = Domain(
    name="stores",
    api=("core.stores.api:StoreController",),
    console=("admin_ui.stores_pages:StoresController", "admin_ui.stores_pages:RedemptionReportController"),
    models=("core.stores.models",),
    scopes={
        "stores:read": "List and read stores (门店).",
        "stores:write": "Create and change stores, deactivate and reactivate them.",
    },
    permissions={"stores.read": EVERYONE, "stores.manage": ADMINS},
)
