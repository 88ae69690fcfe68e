"""Route guards and dependencies: scopes for API clients, roles for console users, the operator realm.

Every guard is a coroutine function: Litestar awaits an ``async def`` guard in the event loop, and sends a
plain function to a worker thread (``anyio.to_thread``) on every request (``litestar.utils.sync``), which
costs more than the check itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Forbidden, TenantSuspended, Unauthorized
from tenants.schemas import Principal
from tenants.scopes import ROLE_PERMISSIONS, SCOPES, role_can

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    return connection.scope.get("state", {}).get("principal")


def require_scope(scope: str) -> Guard:
    """API clients must hold ``scope`` (a scope some domain declares: a typo fails at import)."""
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r} is declared by no domain (core/*/plugin.py)")

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        p = principal_of(connection)
        if p is None or p.kind != "client":
            raise Unauthorized("A bearer token is required", "需要提供 Bearer 访问令牌", code="missing_token")
        if scope not in p.scopes:
            raise Forbidden(
                f"This token lacks the scope {scope!r}",
                f"该令牌缺少权限范围 {scope!r}",
                code="insufficient_scope",
                extra={"required_scope": scope},
            )

    return guard


def require_permission(permission: str) -> Guard:
    """Console users must have a role that grants ``permission``; a suspended tenant is refused.

    ``permission`` must be one some domain declares, so a typo fails at import, not as a refusal.
    """
    if not any(permission in granted for granted in ROLE_PERMISSIONS.values()):
        raise ValueError(f"permission {permission!r} is declared by no domain (core/*/plugin.py)")

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        p = principal_of(connection)
        if p is None or p.kind != "user":
            raise Unauthorized("Please log in", "请先登录", code="login_required")
        if "suspended" in p.scopes:
            raise TenantSuspended(
                "This tenant is suspended; contact the platform operator", "该租户已被暂停，请联系平台运营方"
            )
        if not role_can(p.role or "", permission):
            raise Forbidden("Your role does not allow this", "您的角色无权执行此操作", code="role_forbidden")

    return guard


async def require_operator(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    p = principal_of(connection)
    if p is None or p.kind != "operator":
        raise Unauthorized("Operator login required", "需要运营人员登录", code="operator_login_required")


async def provide_db(request: Any) -> AsyncSession:
    """The request's session, opened by the request-context middleware and committed by it."""
    return request.state.db
