"""The connectors domain (declaration; see core/domains.py)."""

from core.domains import Domain

domain = Domain(
    name="connectors",
    models=("core.connectors.models",),
)
