"""The documented list of API scopes and the console roles' permissions."""

from __future__ import annotations

SCOPES: dict[str, str] = {
    "tenant:read": "Read the tenant's profile, plan and quotas.",
    "users:read": "List and read console users.",
    "users:write": "Invite console users.",
    "audit:read": "Read audit events and verify the audit chain.",
    "jobs:read": "Read background job progress.",
    "events:read": "Read the tenant's event feed (stock alerts and other domain events).",
    "catalog:read": "List and read products.",
    "catalog:write": "Create and change products and bundles.",
    "inventory:read": "Read batches, stock levels, alerts and imports (codes masked).",
    "inventory:write": "Import and generate codes, void codes, reserve and allocate stock.",
    "codes:reveal": "Reveal or export plaintext codes (each reveal needs a reason and is audited).",
    "members:read": "List and read members (phones masked).",
    "members:write": "Create, import and change members.",
    "grants:read": "List and read grants and their codes (masked unless the client may reveal).",
    "grants:write": "Grant codes to members or contacts, void undelivered grants and run bulk grants.",
    "redemptions:read": "List redemptions and stored-value ledgers.",
    "redemptions:write": "Validate and redeem codes, and roll redemptions back within the window.",
    "webhooks:manage": "Manage webhook subscriptions, read the delivery log and resend deliveries.",
    "risk:read": "Read risk rules, refusals and flags.",
    "risk:manage": "Change risk rules, blocklists and lockouts.",
    "clients:manage": (
        "Create, list and revoke API clients, with scopes the caller holds"
        " (only an owner or admin in the console, or the CLI, can give this scope)."
    ),
}

#: The scope that lets an API client manage API clients. An API client can never give it to another.
#: The scope that lets an API client manage API clients; an API client can never give it to another.
MANAGE_CLIENTS_SCOPE = "clients:manage"

_READ = frozenset({"tenant.read", "catalog.read", "inventory.read", "members.read"})
_MANAGE_STOCK = frozenset({"catalog.manage", "inventory.manage", "jobs.read"})
_DISTRIBUTE = frozenset({"members.manage", "grants.manage", "redemptions.redeem", "risk.read"})
_GOVERN = frozenset({"redemptions.rollback", "webhooks.manage", "risk.manage", "reminders.manage"})

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "owner": _READ | _MANAGE_STOCK | _DISTRIBUTE | _GOVERN
    | {"users.manage", "clients.manage", "audit.read", "codes.reveal"},
    "admin": _READ | _MANAGE_STOCK | _DISTRIBUTE | _GOVERN
    | {"users.manage", "clients.manage", "audit.read", "codes.reveal"},
    "operator": _READ | _MANAGE_STOCK | _DISTRIBUTE,
    "finance": _READ | {"audit.read", "jobs.read", "risk.read"},
    "viewer": _READ,
}


def unknown_scopes(scopes: list[str]) -> list[str]:
    return [s for s in scopes if s not in SCOPES]


def role_can(role: str, permission: str) -> bool:
    return permission in ROLE_PERMISSIONS.get(role, frozenset())
