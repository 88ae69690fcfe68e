"""A tenant's connector accounts (every kind), and the platform route from a public callback to its tenant."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import Base, TenantScoped

__all__ = ["ACCOUNT_STATUSES", "AccountRoute", "ConnectorAccount"]

#: ``active``: in use; ``paused``: kept but not called (by a person, or after a failed token refresh);
#: ``disconnected``: secrets and tokens erased, kept for the history that names it.
ACCOUNT_STATUSES = ("active", "paused", "disconnected")


class ConnectorAccount(TenantScoped):
    """A tenant's account of one installed connector.

    ``config`` holds the non-secret settings as given; ``secrets`` the secret ones (fields typed
    ``plugins.Secret``) as JSON encrypted under the tenant's data key; ``oauth_tokens`` the OAuth2 token set
    (access, refresh, expiry), encrypted likewise. Neither is ever returned, shown or logged.
    The health fields record the last call's outcome; ``order_cursor`` is where order polling resumes.
    """

    __tablename__ = "connector_accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        Index("ix_connector_accounts_connector", "tenant_id", "connector_id", "status"),
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in ACCOUNT_STATUSES)})", name="status_known"),
    )
    connector_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="active")
    status_reason: Mapped[str] = mapped_column(String(500), default="")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secrets: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    #: Names of the secret settings that hold a value (never the values), to show "set" on screen.
    secret_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    oauth_tokens: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    oauth_state: Mapped[str | None] = mapped_column(String(128), default=None)
    token_expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    authorised_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_ok_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_error_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    order_cursor: Mapped[str] = mapped_column(String(500), default="")
    orders_polled_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    updated_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_by: Mapped[uuid.UUID | None] = mapped_column(default=None)


class AccountRoute(Base):
    """Platform table: which tenant a connector account belongs to, so that the public callback route
    ``POST /channels/{account}/callback`` (no tenant login) can enter that tenant's context. The account's
    connector then verifies the callback with that account's own secret."""

    __tablename__ = "connector_account_routes"
    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
