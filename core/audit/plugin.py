"""The audit domain: the per-tenant chain of audit events sealed in blocks, its sealers and verification.

Its API controller lives in ``tenants.api_audit`` and its sealing job in ``core.jobs.actors``: the chain
itself imports no domain, and the jobs and tenants packages build on it.
"""

import datetime as dt

from core.domains import ADMINS, FINANCE, Domain, Periodic

domain = Domain(
    name="audit",
    api=("tenants.api_audit:AuditController",),
    console=("admin_ui.console_pages:AuditPageController",),
    models=("core.audit.models",),
    periodic=(Periodic("seal_audit_chain", "seal_audit_chain", dt.timedelta(minutes=1)),),
    scopes={"audit:read": "Read audit events and verify the audit chain."},
    permissions={"audit.read": ADMINS | FINANCE},
)
