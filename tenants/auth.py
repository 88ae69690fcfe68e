"""Who is calling: one middleware opens the request's DB session, resolves the principal and sets the
tenant context, the audit actor and the log context, applies rate limits, and commits the session just
before the response starts (so a client never sees a success that was not committed).
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy import select

from core.audit.context import Actor, reset_actor, set_actor
from core.db.context import reset_tenant, set_tenant
from core.errors import DomainError, Unauthorized
from core.http.locale import scope_locale
from core.http.problems import (
    OUTAGE_RETRY_AFTER,
    classify_failure,
    problem_body,
    send_problem_asgi,
    send_problem_body,
)
from tenants.clients import authenticate_bearer
from tenants.models import Operator, Tenant, User
from tenants.operators import authenticate_operator_token
from tenants.schemas import Principal

log = structlog.get_logger("kaquan.auth")

PUBLIC_API = {"/api/platform/v1/login"}


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return None


def _bearer(scope: dict[str, Any]) -> str:
    auth = _header(scope, b"authorization") or ""
    if not auth.lower().startswith("bearer ") or not auth[7:].strip():
        raise Unauthorized("A bearer token is required", "需要提供 Bearer 访问令牌", code="missing_token")
    return auth[7:].strip()


async def _console_principal(session: Any, data: dict[str, Any]) -> Principal | None:
    """Re-check a console session against the database on every request (disabled user, suspended tenant)."""
    try:
        return await _resolve_console_principal(session, data)
    except (KeyError, ValueError, TypeError):
        return None  # a stale or malformed session is simply not logged in


async def _resolve_console_principal(session: Any, data: dict[str, Any]) -> Principal | None:
    realm = data.get("realm")
    if realm == "operator":
        op = await session.get(Operator, uuid.UUID(data["operator_id"]))
        return Principal(kind="operator", subject_id=str(op.id)) if op and op.is_active else None
    if realm == "tenant":
        tenant_id = uuid.UUID(data["tenant_id"])
        set_tenant(tenant_id)
        row = (
            await session.execute(
                select(User, Tenant.status)
                .join(Tenant, Tenant.id == User.tenant_id)
                .where(User.id == uuid.UUID(data["user_id"]))
            )
        ).first()
        if row is None or row[0].status != "active":
            return None
        user, status = row
        return Principal(
            kind="user",
            subject_id=str(user.id),
            tenant_id=tenant_id,
            role=user.role,
            scopes=frozenset({"suspended"}) if status != "active" else frozenset(),
        )
    return None


def request_context_middleware(app: Any) -> Any:
    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(("/static/", "/health", "/metrics", "/schema")):
            await app(scope, receive, send)
            return
        kernel = scope["app"].state.kernel
        state = scope.setdefault("state", {})
        tenant_token = set_tenant(None)
        actor_token = set_actor(Actor("anonymous", "-"))
        session = kernel.db.sessionmaker()
        state["db"] = session
        rate_headers: list[tuple[bytes, bytes]] = []
        try:
            try:
                principal = await _principal_of(session, kernel, scope, path, rate_headers)
            except DomainError as exc:
                await session.rollback()
                await send_problem_asgi(send, exc, scope_locale(scope), rate_headers, path=path)
                return
            # Hand the lookup's connection back before the rest of the pipeline runs. The idempotency
            # middleware and some services open short transactions of their own; a request that held one
            # connection while waiting for a second starved the pool under load (every request waiting,
            # none finishing). The handler's work begins a new transaction, with the tenant set.
            if session.in_transaction():
                await session.commit()
            state["principal"] = principal
            if principal is not None:
                set_actor(Actor(principal.kind, principal.subject_id))
                if principal.tenant_id:
                    set_tenant(principal.tenant_id)
                    structlog.contextvars.bind_contextvars(tenant_id=str(principal.tenant_id))
            await app(scope, receive, _committing_send(send, session, state, rate_headers, path))
        finally:
            await session.close()
            reset_tenant(tenant_token)
            reset_actor(actor_token)

    return middleware


async def _principal_of(
    session: Any, kernel: Any, scope: dict[str, Any], path: str, rate_headers: list[tuple[bytes, bytes]]
) -> Principal | None:
    """Who calls ``path``: a bearer token's client (rate-limited; the limit's headers are added to
    ``rate_headers``), an operator token, or the console session's user. A refusal is a :class:`DomainError`.
    """
    if path.startswith("/api/v1/"):
        principal = await authenticate_bearer(session, _bearer(scope))
        decision = await scope["app"].state.rate_limiter.hit(
            [
                (f"tenant:{principal.tenant_id}", principal.rate_limit or 600),
                (
                    f"client:{principal.tenant_id}:{principal.subject_id}",
                    kernel.settings.default_rate_limit_per_minute,
                ),
            ],
            slot=str(principal.tenant_id),
        )
        rate_headers.extend(decision.headers())
        if not decision.allowed:
            raise DomainError(
                "Too many requests; slow down",
                "请求过于频繁，请稍后再试",
                code="rate_limited",
                status=429,
            )
        return principal
    if path.startswith("/api/platform/v1/") and path not in PUBLIC_API:
        return await authenticate_operator_token(session, _bearer(scope))
    if path.startswith(("/console", "/platform")) and isinstance(scope.get("session"), dict):
        return await _console_principal(session, scope["session"])
    return None


def _committing_send(
    send: Any, session: Any, state: dict[str, Any], rate_headers: list[tuple[bytes, bytes]], path: str
) -> Any:
    """The ``send`` the app answers through: it commits the request's session as a success response
    starts (rolls back on an error status), so a client never sees a success that was not committed; a
    failed commit is answered instead (:func:`_send_commit_failure`) and the app's response dropped."""

    async def send_wrapper(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            if rate_headers:
                message["headers"] = [*message.get("headers", []), *rate_headers]
            if message["status"] < 400:
                try:
                    await session.commit()
                    state["kaquan_committed"] = True
                except Exception as exc:  # boundary: request middleware answers a failed commit
                    state["kaquan_committed"] = False
                    await session.rollback()
                    await _send_commit_failure(send, exc, path)
                    state["kaquan_aborted"] = True
                    return
            else:
                state["kaquan_committed"] = False
                await session.rollback()
        if state.get("kaquan_aborted"):
            return
        await send(message)

    return send_wrapper


async def _send_commit_failure(send: Any, exc: Exception, path: str) -> None:
    """500 ``internal_error``, or 503 ``service_unavailable`` with ``Retry-After`` when the database is gone
    (retryable): nothing was changed. Called while ``exc`` is being handled (its traceback is logged)."""
    status, code, extra = 500, "internal_error", []
    if classify_failure(exc) == "outage":  # database gone at commit: retryable
        status, code = 503, "service_unavailable"
        extra = [(b"retry-after", OUTAGE_RETRY_AFTER.encode())]
        log.warning("commit_failed_outage", path=path, error_type=type(exc).__name__)
    else:
        log.exception("commit_failed", path=path)
    body = problem_body(status, code, "The change could not be saved; nothing was changed")
    await send_problem_body(send, status, body, extra)
