"""Display labels for stored values (roles, statuses, permissions), marked for translation."""

from __future__ import annotations

from admin_ui.i18n import N_

ROLE_LABELS: dict[str, str] = {
    "owner": N_("Owner"),
    "admin": N_("Admin"),
    "operator": N_("Operator"),
    "finance": N_("Finance"),
    "viewer": N_("Viewer"),
}

STATUS_LABELS: dict[str, str] = {
    "active": N_("Active"),
    "invited": N_("Invited"),
    "disabled": N_("Disabled"),
    "suspended": N_("Suspended"),
    "revoked": N_("Revoked"),
}

PERMISSION_LABELS: dict[str, str] = {
    "tenant.read": N_("View the dashboard"),
    "users.manage": N_("Manage users"),
    "clients.manage": N_("Manage API clients"),
    "audit.read": N_("Read the audit log"),
    "jobs.read": N_("See background jobs"),
    "catalog.read": N_("View products"),
    "catalog.manage": N_("Manage products"),
    "inventory.read": N_("View stock"),
    "inventory.manage": N_("Manage stock and codes"),
    "codes.reveal": N_("Reveal plaintext codes"),
}

FIELD_LABELS: dict[str, str] = {
    "name": N_("Name"),
    "slug": N_("Slug"),
    "owner_email": N_("Owner e-mail"),
    "email": N_("E-mail"),
    "plan": N_("Plan"),
    "timezone": N_("Timezone"),
    "currency": N_("Currency"),
    "role": N_("Role"),
    "scopes": N_("Scopes"),
    "reason": N_("Reason"),
    "password": N_("Password"),
    "password_confirm": N_("Repeat password"),
    "tenant": N_("Tenant"),
    "locale": N_("Language"),
}

SCOPE_TEXTS: tuple[str, ...] = (
    N_("Read the tenant's profile, plan and quotas."),
    N_("List and read console users."),
    N_("Invite console users."),
    N_("Read audit events and verify the audit chain."),
    N_("Read background job progress."),
    N_("Read the tenant's event feed (stock alerts and other domain events)."),
    N_("List and read products."),
    N_("Create and change products and bundles."),
    N_("Read batches, stock levels, alerts and imports (codes masked)."),
    N_("Import and generate codes, void codes, reserve and allocate stock."),
    N_("Reveal or export plaintext codes (each reveal needs a reason and is audited)."),
)
"""The descriptions of ``tenants.scopes.SCOPES``, repeated here so extraction finds them (a test checks)."""
