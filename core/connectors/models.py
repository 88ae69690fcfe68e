"""A tenant's connector accounts (every kind), and the platform route from a public callback to its tenant."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TENANT_COLUMN, Base, TenantScoped
from core.db.context import require_tenant

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
    """Which tenant a connector account belongs to, so that the public callback route
    ``POST /channels/{account}/callback`` and the OAuth2 redirect (no tenant login) can enter that tenant's
    context. The account's connector then verifies the callback with that account's own secret.

    Read by ``account_id`` alone, under ``cross_tenant(...)`` (:func:`find_route`). Like every table with a
    ``tenant_id`` it is walled by row-level security and stamped from the context, with the tenant first in
    its primary key; account ids are UUIDv7, so ``account_id`` alone finds one row (index, not unique).
    """

    __tablename__ = "connector_account_routes"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "account_id"],
            ["connector_accounts.tenant_id", "connector_accounts.id"],
            ondelete="CASCADE",
        ),
        Index("ix_connector_account_routes_account", "account_id"),
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"),
        primary_key=True,
        default=require_tenant,
        info={TENANT_COLUMN: True},
    )
    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
