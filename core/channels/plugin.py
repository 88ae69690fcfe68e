"""The channels domain: listings of products on sales-channel accounts, their prices and quotas, and the
coalesced stock sync to the channels (with drift and low-watermark alerts)."""

import datetime as dt

from core.domains import EVERYONE, OPERATORS, Domain, Periodic

domain = Domain(
    name="channels",
    api=("core.channels.api:ListingController",),
    console=("admin_ui.listings_pages:ListingsController",),
    models=("core.channels.models",),
    jobs=("core.channels.jobs",),
    periodic=(Periodic("sync_channel_stock", "sync_channel_stock", dt.timedelta(minutes=5)),),
    events={
        "channel.stock_drift": (
            "A channel reports a stock for a listing other than the quota we hold for it (drift alert)."
        ),
        "channel.listing_low": "A listing's remaining quota fell under its low watermark (replenish it).",
    },
    scopes={
        "listings:read": "List and read channel listings, their price history, quotas and sync state.",
        "listings:write": "Create listings, change their price rules and quotas, pause and resume them.",
    },
    permissions={"listings.read": EVERYONE, "listings.manage": OPERATORS},
    provides={
        "inventory.batch_stocked": ("core.channels.hooks:batch_stocked",),
        "inventory.stock_fell": ("core.channels.hooks:stock_fell",),
    },
)
