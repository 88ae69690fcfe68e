"""The documented list of API scopes and the console roles' permissions."""

from __future__ import annotations

SCOPES: dict[str, str] = {
    "tenant:read": "Read the tenant's profile, plan and quotas.",
    "users:read": "List and read console users.",
    "users:write": "Invite console users.",
    "audit:read": "Read audit events and verify the audit chain.",
    "jobs:read": "Read background job progress.",
}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "owner": frozenset({"tenant.read", "users.manage", "clients.manage", "audit.read", "jobs.read"}),
    "admin": frozenset({"tenant.read", "users.manage", "clients.manage", "audit.read", "jobs.read"}),
    "operator": frozenset({"tenant.read", "jobs.read"}),
    "finance": frozenset({"tenant.read", "audit.read", "jobs.read"}),
    "viewer": frozenset({"tenant.read"}),
}


def unknown_scopes(scopes: list[str]) -> list[str]:
    return [s for s in scopes if s not in SCOPES]


def role_can(role: str, permission: str) -> bool:
    return permission in ROLE_PERMISSIONS.get(role, frozenset())
