"""The channel_orders domain (declaration; see core/domains.py)."""

import datetime as dt

from core.domains import EVERYONE, OPERATORS, Domain, Periodic

domain = Domain(
    name="channel_orders",
    api=(
        "core.channel_orders.api:ChannelOrderController",
        "core.channel_orders.api:ChannelCallbackController",
        "core.channel_orders.complaints_api:ComplaintController",
    ),
    console=("admin_ui.channel_orders_pages:ChannelOrdersController",),
    models=("core.channel_orders.models",),
    jobs=(
        "core.channel_orders.processing",
        "core.channel_orders.delivery",
        "core.channel_orders.redemptions",
        "core.channel_orders.polling",
    ),
    periodic=(Periodic("poll_channel_orders", "poll_channel_orders", dt.timedelta(minutes=2)),),
    events={
        "channel.order_received": "An order arrived from a sales channel (callback or polling), stored once.",
        "channel.order_fulfilled": "A channel order's codes were handed to the channel.",
        "channel.order_refused": (
            "A channel order was refused (unknown SKU, paused listing, quota or stock exhausted, risk rule)."
        ),
        "channel.order_failed": "A channel order's codes could not be handed to the channel: a person must look.",
        "channel.order_refunded": (
            "A channel reported a cancellation or refund: unrevealed codes back to stock, revealed ones voided."
        ),
        "channel.redemption_rolled_back": (
            "A redemption the channel knew of was rolled back here: a person must tell the channel (no SDK method)."
        ),
        "channel.redemption_conflict": (
            "A redemption could not be kept in step with the channel (the code was redeemed on the other side)."
        ),
    },
    scopes={
        "channel_orders:read": "List and read channel orders (codes masked) and per-channel sales.",
        "channel_orders:write": "Retry the delivery of failed channel orders and record buyer complaints.",
    },
    permissions={"channel_orders.read": EVERYONE, "channel_orders.manage": OPERATORS},
    provides={
        "redemption.code_redeemed": ("core.channel_orders.redemptions:code_redeemed",),
        "redemption.code_rolled_back": ("core.channel_orders.redemptions:code_rolled_back",),
        "inventory.code_holders": ("core.channel_orders.redemptions:CHANNEL_HOLDERS",),
    },
)
