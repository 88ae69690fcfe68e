"""The API scopes and the console roles' permissions, collected from every domain's declaration."""

from __future__ import annotations

from core.domains import role_permissions, scopes

#: Every API scope with its documented meaning (each domain declares its own in ``plugin.py``).
SCOPES: dict[str, str] = scopes()

#: The scope that lets an API client manage API clients; an API client can never give it to another.
MANAGE_CLIENTS_SCOPE = "clients:manage"

#: Each console role's permissions (each domain declares which roles hold its permissions).
ROLE_PERMISSIONS: dict[str, frozenset[str]] = role_permissions()


def unknown_scopes(scopes: list[str]) -> list[str]:
    """The scopes in ``scopes`` that no domain declares."""
    return [s for s in scopes if s not in SCOPES]


def role_can(role: str, permission: str) -> bool:
    """Whether the console role ``role`` holds ``permission``."""
    return permission in ROLE_PERMISSIONS.get(role, frozenset())
