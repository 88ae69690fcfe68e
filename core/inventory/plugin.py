"""The inventory domain: batches, codes, import and generation, allocation, stock alerts and expiry."""

import datetime as dt

from core.domains import ADMINS, EVERYONE, OPERATORS, Domain, Periodic

domain = Domain(
    name="inventory",
    api=("core.inventory.api:InventoryController", "core.inventory.importing.api:CodeImportController"),
    console=(
        "admin_ui.inventory_pages:StockController",
        "admin_ui.inventory_pages:BatchesController",
        "admin_ui.inventory_pages:CodesController",
        "admin_ui.imports_pages:ImportsController",
    ),
    models=("core.inventory.models",),
    jobs=("core.inventory.importing.jobs", "core.inventory.jobs"),
    periodic=(
        Periodic("expire_codes", "expire_codes", dt.timedelta(hours=1)),
        Periodic("sweep_reservations", "sweep_reservations", dt.timedelta(minutes=5)),
        Periodic("check_stock_alerts", "check_stock_alerts", dt.timedelta(hours=1)),
    ),
    events={
        "stock.low": "A product's available stock fell below its threshold, days of cover or watermark.",
        "stock.near_expiry": "Available codes of a product expire within its near-expiry window.",
    },
    scopes={
        "inventory:read": "Read batches, stock levels, alerts and imports (codes masked).",
        "inventory:write": "Import and generate codes, void codes, reserve and allocate stock.",
        "codes:reveal": "Reveal or export plaintext codes (each reveal needs a reason and is audited).",
    },
    permissions={"inventory.read": EVERYONE, "inventory.manage": OPERATORS, "codes.reveal": ADMINS},
    provides={"catalog.holds_codes": ("core.inventory.stock:product_has_codes",)},
)
