"""The catalog domain: products, bundles, validity rules."""

from core.domains import EVERYONE, OPERATORS, Domain

domain = Domain(
    name="catalog",
    api=("core.catalog.api:CatalogController",),
    console=("admin_ui.catalog_pages:ProductsController",),
    models=("core.catalog.models",),
    scopes={
        "catalog:read": "List and read products.",
        "catalog:write": "Create and change products and bundles.",
    },
    permissions={"catalog.read": EVERYONE, "catalog.manage": OPERATORS},
)
