"""The audit domain: the per-tenant hash chain of audit events, its sealer and verification."""

import datetime as dt

from core.domains import ADMINS, FINANCE, Domain, Periodic

domain = Domain(
    name="audit",
    api=("core.audit.api:AuditController",),
    console=("admin_ui.console_pages:AuditPageController",),
    models=("core.audit.models",),
    jobs=("core.audit.jobs",),
    periodic=(Periodic("seal_audit_chain", "seal_audit_chain", dt.timedelta(minutes=1)),),
    scopes={"audit:read": "Read audit events and verify the audit chain."},
    permissions={"audit.read": ADMINS | FINANCE},
)
