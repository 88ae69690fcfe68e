"""The channel_orders domain (declaration; see core/domains.py)."""

from core.domains import Domain

domain = Domain(
    name="channel_orders",
    models=("core.channel_orders.models",),
)
