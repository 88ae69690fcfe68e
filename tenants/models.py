"""Platform tables (plans, tenants, operators) and the tenant's people and API clients."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import JSON, ForeignKey, ForeignKeyConstraint, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import PlatformModel, TenantScoped

ROLES: tuple[str, ...] = ("owner", "admin", "operator", "finance", "viewer", "clerk")
#: The store clerk (核销员): redeems at the stores bound to them (``core.stores``), sees nothing else.
CLERK = "clerk"


class Plan(PlatformModel):
    """A commercial plan with the quotas a tenant on it may use."""

    __tablename__ = "plans"
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))  # the display name in English
    name_zh: Mapped[str | None] = mapped_column(String(120), default=None)  # the display name in Chinese
    max_users: Mapped[int] = mapped_column(default=5)
    max_api_clients: Mapped[int] = mapped_column(default=2)
    requests_per_minute: Mapped[int] = mapped_column(default=600)
    max_stored_codes: Mapped[int] = mapped_column(default=100_000)
    allowed_connectors: Mapped[list[str]] = mapped_column(JSON, default=list)

    def allows_connector(self, connector_id: str) -> bool:
        """Whether tenants on this plan may connect the given connector (empty list: none allowed)."""
        return connector_id in self.allowed_connectors or "*" in self.allowed_connectors


class Tenant(PlatformModel):
    """A customer business. Its id is the ``tenant_id`` of every row it owns."""

    __tablename__ = "tenants"
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("plans.id"))
    status: Mapped[str] = mapped_column(String(20), default="active")
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    owner_email: Mapped[str] = mapped_column(String(254))
    locale: Mapped[str] = mapped_column(String(10), default="zh-CN")
    status_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    status_changed_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    @property
    def is_active(self) -> bool:
        return self.status == "active"


class Operator(PlatformModel):
    """A platform operator: a separate realm from tenant users."""

    __tablename__ = "operators"
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(default=True)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")  # times on the operator console


class OperatorToken(PlatformModel):
    """A bearer token for the operator API, stored as a digest."""

    __tablename__ = "operator_tokens"
    operator_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"))
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class User(TenantScoped):
    """A console user of one tenant, with one role."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(120), default="")
    role: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="invited")
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    invite_digest: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    invite_expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    locale: Mapped[str | None] = mapped_column(String(10), default=None)


class ApiClient(TenantScoped):
    """An OAuth2 client (client credentials) of one tenant's own systems."""

    __tablename__ = "api_clients"
    __table_args__ = (UniqueConstraint("tenant_id", "client_id"),)
    name: Mapped[str] = mapped_column(String(120))
    client_id: Mapped[str] = mapped_column(String(80))
    secret_digest: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_by: Mapped[uuid.UUID | None] = mapped_column(default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class AccessToken(TenantScoped):
    """A short-lived bearer token issued to an API client; only its digest is stored."""

    __tablename__ = "access_tokens"
    __table_args__ = (
        UniqueConstraint("tenant_id", "token_digest"),
        ForeignKeyConstraint(
            ["tenant_id", "client_pk"], ["api_clients.tenant_id", "api_clients.id"], ondelete="CASCADE"
        ),
        Index("ix_access_tokens_client", "tenant_id", "client_pk"),
    )
    client_pk: Mapped[uuid.UUID]
    token_digest: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
