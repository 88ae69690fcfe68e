"""The channels domain (declaration; see core/domains.py)."""

from core.domains import Domain

domain = Domain(
    name="channels",
    models=("core.channels.models",),
)
