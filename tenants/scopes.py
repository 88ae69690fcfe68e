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
}

_READ = frozenset({"tenant.read", "catalog.read", "inventory.read"})
_MANAGE_STOCK = frozenset({"catalog.manage", "inventory.manage", "jobs.read"})

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "owner": _READ | _MANAGE_STOCK | {"users.manage", "clients.manage", "audit.read", "codes.reveal"},
    "admin": _READ | _MANAGE_STOCK | {"users.manage", "clients.manage", "audit.read", "codes.reveal"},
    "operator": _READ | _MANAGE_STOCK,
    "finance": _READ | {"audit.read", "jobs.read"},
    "viewer": _READ,
}


def unknown_scopes(scopes: list[str]) -> list[str]:
    return [s for s in scopes if s not in SCOPES]


def role_can(role: str, permission: str) -> bool:
    return permission in ROLE_PERMISSIONS.get(role, frozenset())
