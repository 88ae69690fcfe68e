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
    "inactive": N_("Inactive"),
    "archived": N_("Archived"),
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
    "members.read": N_("View members"),
    "members.manage": N_("Manage members"),
    "data.export": N_("Export members and grants (XLSX)"),
    "members.phones": N_("Export whole phone numbers"),
    "grants.manage": N_("Grant codes"),
    "redemptions.redeem": N_("Redeem codes"),
    "redemptions.rollback": N_("Roll back redemptions"),
    "webhooks.manage": N_("Manage webhooks"),
    "risk.read": N_("View risk control"),
    "risk.manage": N_("Manage risk rules"),
    "reminders.manage": N_("Change expiry reminders"),
    "connectors.manage": N_("Manage connector accounts"),
    "channel_orders.read": N_("View channel orders and sales"),
    "channel_orders.manage": N_("Retry channel order deliveries"),
    "listings.read": N_("View channel listings"),
    "listings.manage": N_("Manage channel listings"),
    "splits.read": N_("View split rules and the split ledger"),
    "splits.manage": N_("Manage split rules"),
    "settlement.read": N_("View statements, reconciliation and settlements"),
    "settlement.manage": N_("Import statements, reconcile and settle"),
    "kpis.read": N_("View channel KPIs"),
}

FIELD_LABELS: dict[str, str] = {
    "cursor": N_("Position in the list"),
    "limit": N_("Rows per page"),
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
    "sku": N_("SKU"),
    "account_id": N_("Channel account"),
    "quota_value": N_("Quota"),
    "low_watermark_bp": N_("Low watermark"),
    "kind": N_("Type"),
    "code_format": N_("Code format"),
    "name_zh": N_("Chinese name"),
    "name_en": N_("English name"),
    "brand": N_("Brand"),
    "category": N_("Category"),
    "face_value": N_("Face value"),
    "validity_kind": N_("Validity"),
    "validity_date": N_("Valid until"),
    "validity_days": N_("Days after issue"),
    "usage_rules": N_("Usage rules"),
    "provenance": N_("Provenance"),
    "status": N_("Status"),
    "tags": N_("Tags"),
    "max_uses": N_("Uses per code"),
    "low_stock_threshold": N_("Low-stock threshold"),
    "low_stock_days_cover": N_("Days of cover"),
    "near_expiry_days": N_("Near-expiry warning (days)"),
    "items": N_("Bundle items"),
    "product_id": N_("Product"),
    "supplier": N_("Supplier"),
    "unit_cost": N_("Unit cost"),
    "purchase_ref": N_("Purchase reference"),
    "expires_at": N_("Expiry date"),
    "notes": N_("Notes"),
    "file": N_("File"),
    "text": N_("Pasted codes"),
    "count": N_("Number of codes"),
    "prefix": N_("Prefix"),
    "pattern": N_("Pattern"),
    "code_ids": N_("Codes"),
    "mapping": N_("Column mapping"),
    "number": N_("Card number"),
    "pin": N_("PIN"),
    "states": N_("States"),
}

KIND_LABELS: dict[str, str] = {
    "code": N_("Card key"),
    "reusable_code": N_("Reusable code"),
    "stored_value": N_("Stored-value card"),
    "bundle": N_("Bundle"),
}

CODE_FORMAT_LABELS: dict[str, str] = {
    "number": N_("Card number only"),
    "number_pin": N_("Card number + PIN"),
}

VALIDITY_LABELS: dict[str, str] = {
    "batch_expiry": N_("The batch's expiry date"),
    "fixed_date": N_("A fixed date"),
    "days_after_issue": N_("N days after issue"),
}

PROVENANCE_LABELS: dict[str, str] = {
    "official": N_("Official source"),
    "authorised_reseller": N_("Authorised reseller"),
    "other": N_("Other"),
}

CODE_STATE_LABELS: dict[str, str] = {
    "available": N_("Available"),
    "reserved": N_("Reserved"),
    "issued": N_("Issued"),
    "redeemed": N_("Redeemed"),
    "expired": N_("Expired"),
    "voided": N_("Voided"),
}

ALERT_LABELS: dict[str, str] = {
    "low_stock": N_("Low stock"),
    "near_expiry": N_("Near expiry"),
}

JOB_STATUS_LABELS: dict[str, str] = {
    "queued": N_("Queued"),
    "running": N_("Running"),
    "waiting": N_("Waiting for a worker…"),
    "succeeded": N_("Finished"),
    "failed": N_("Failed"),
}

SOURCE_LABELS: dict[str, str] = {
    "import": N_("Imported"),
    "generated": N_("Generated"),
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
    N_("List and read members (phones masked)."),
    N_("Create, import and change members."),
    N_("List and read grants and their codes (masked unless the client may reveal)."),
    N_("Grant codes to members or contacts, void undelivered grants and run bulk grants."),
    N_("List and read channel listings, their price history, quotas and sync state."),
    N_("Create listings, change their price rules and quotas, pause and resume them."),
    N_("List redemptions and stored-value ledgers."),
    N_("Validate and redeem codes, and roll redemptions back within the window."),
    N_("Manage webhook subscriptions, read the delivery log and resend deliveries."),
    N_("Read risk rules, refusals and flags."),
    N_("Change risk rules, blocklists and lockouts."),
    N_("List the connectors your plan allows and your connector accounts with their health."),
    N_("Connect, configure, test, authorise, pause, resume and disconnect connector accounts."),
    N_("List and read channel orders (codes masked) and per-channel sales."),
    N_("Retry the delivery of failed channel orders and record buyer complaints."),
    N_("Read split rules, their versions, previews and the split ledger's balances."),
    N_("Create and change split rules (each change is a new version)."),
    N_("Read statements, reconciliation results and settlements, and export them."),
    N_("Import and fetch statements, reconcile, resolve mismatches, confirm settlements and record payments."),
    N_("Read the consignment KPIs per channel and overall."),
    N_(
        "Create, list and revoke API clients, with scopes the caller holds"
        " (only an owner or admin in the console, or the CLI, can give this scope)."
    ),
)
"""The descriptions of ``tenants.scopes.SCOPES``, repeated here so extraction finds them (a test checks)."""

PROBLEM_LABELS: dict[str, str] = {
    "empty": N_("Empty card number"),
    "bad_characters": N_("Bad characters"),
    "too_long": N_("Too long"),
    "too_short": N_("Too short"),
    "bad_charset": N_("Characters not allowed"),
    "excel_precision": N_("Rounded by Excel"),
    "bad_date": N_("Malformed date"),
    "expired": N_("Already expired"),
    "duplicate_in_file": N_("Duplicate in the file"),
    "duplicate_existing": N_("Already in stock"),
    "pin_missing": N_("PIN missing"),
    "pin_unexpected": N_("Unexpected PIN"),
}
"""Kinds of row problems of an import report (``core.inventory.importing.validation.PROBLEMS``)."""

COLUMN_LABELS: dict[str, str] = {
    "number": N_("Card number"),
    "pin": N_("PIN"),
    "expires_at": N_("Expiry date"),
}
