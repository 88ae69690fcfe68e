"""The tenant context: which tenant the current request, job or command acts for.

Every tenant-scoped query reads it. No tenant in context is an error, never "all tenants";
cross-tenant work must enter :func:`cross_tenant` with a stated reason.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar, Token

from sqlalchemy.exc import DontWrapMixin

_tenant: ContextVar[uuid.UUID | None] = ContextVar("kaquan_tenant", default=None)
_bypass: ContextVar[str | None] = ContextVar("kaquan_bypass", default=None)


class TenantContextMissing(DontWrapMixin, RuntimeError):
    """A tenant-scoped query ran with no tenant in context and no named bypass, or a write named a tenant that
    is not in context. SQLAlchemy raises it as is (not wrapped in ``StatementError``) from a column default."""


def current_tenant() -> uuid.UUID | None:
    return _tenant.get()


def require_tenant() -> uuid.UUID:
    """The tenant in context; :class:`TenantContextMissing` if there is none. Also the ``tenant_id`` column
    default, so a Core ``insert()`` (one row, many rows, executemany, upsert, from a select) is stamped too."""
    tid = _tenant.get()
    if tid is None:
        raise TenantContextMissing("no tenant in context for a tenant-scoped operation")
    return tid


def bypass_reason() -> str | None:
    """The reason of the active cross-tenant bypass, or None."""
    return _bypass.get()


def set_tenant(tenant_id: uuid.UUID | None) -> Token[uuid.UUID | None]:
    """Set the tenant for the rest of this task; returns a token for :func:`reset_tenant`."""
    return _tenant.set(tenant_id)


def reset_tenant(token: Token[uuid.UUID | None]) -> None:
    _tenant.reset(token)


@contextlib.contextmanager
def tenant_context(tenant_id: uuid.UUID) -> Iterator[uuid.UUID]:
    token = _tenant.set(tenant_id)
    try:
        yield tenant_id
    finally:
        _tenant.reset(token)


@contextlib.contextmanager
def cross_tenant(reason: str) -> Iterator[None]:
    """The named bypass for operators, the scheduler and the outbox relay."""
    if not reason:
        raise ValueError("a cross-tenant bypass needs a reason")
    token = _bypass.set(reason)
    try:
        yield
    finally:
        _bypass.reset(token)
