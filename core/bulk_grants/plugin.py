"""The bulk grants domain: one grant per row of an uploaded file, run as a job."""

from core.domains import Domain

domain = Domain(
    name="bulk_grants",
    api=("core.bulk_grants.api:BulkGrantController",),
    console=("admin_ui.bulk_grants_pages:BulkGrantsController",),
    models=("core.bulk_grants.models",),
    jobs=("core.bulk_grants.jobs",),
)
