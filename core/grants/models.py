"""Grants and the code units they hand out (a member's wallet is the grant items they hold)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, ForeignKeyConstraint, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped

__all__ = ["GRANT_SOURCES", "GRANT_STATUSES", "ITEM_STATUSES", "Grant", "GrantItem"]

GRANT_SOURCES = ("api", "console", "bulk", "claim")
#: The statuses of the state machine in :mod:`core.grants.lifecycle` (its transition tables use these).
ITEM_STATUSES = ("held", "redeemed", "transferred", "voided", "expired")
GRANT_STATUSES = (
    "created",
    "delivered",
    "delivery_failed",
    "partially_redeemed",
    "redeemed",
    "expired",
    "voided",
)


def status_check(statuses: tuple[str, ...]) -> CheckConstraint:
    """The database refuses a status the state machine (:mod:`core.grants.lifecycle`) does not know."""
    return CheckConstraint(f"status IN ({', '.join(repr(s) for s in statuses)})", name="status_known")


class Grant(TenantScoped):
    """``quantity`` units of a product handed to a member or a contact (phone or e-mail), in one go.

    ``contact_secret`` is the contact encrypted under the tenant's data key (needed to deliver);
    ``contact_masked`` is what the console shows.
    """

    __tablename__ = "grants"
    __table_args__ = (
        UniqueConstraint("tenant_id", "ref"),
        ForeignKeyConstraint(["tenant_id", "product_id"], ["products.tenant_id", "products.id"]),
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_grants_member", "tenant_id", "member_id", "id"),
        Index("ix_grants_status", "tenant_id", "status", "id"),
        Index("ix_grants_created", "tenant_id", "created_at"),
        status_check(GRANT_STATUSES),
    )
    ref: Mapped[str] = mapped_column(String(20))
    product_id: Mapped[uuid.UUID]
    quantity: Mapped[int]
    member_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    channel: Mapped[str | None] = mapped_column(String(20), default=None)  # sms | email | None (no delivery)
    contact_masked: Mapped[str | None] = mapped_column(String(254), default=None)
    contact_secret: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    campaign_ref: Mapped[str | None] = mapped_column(String(120), default=None)
    source: Mapped[str] = mapped_column(String(20), default="api")
    client_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    user_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(20), default="created")
    delivered_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    delivery_detail: Mapped[str | None] = mapped_column(String(500), default=None)
    voided_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    void_reason: Mapped[str | None] = mapped_column(String(500), default=None)


class GrantItem(TenantScoped):
    """One unit handed out: a code (a reusable code appears once per unit), its holder and its fate."""

    __tablename__ = "grant_items"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "grant_id"], ["grants.tenant_id", "grants.id"]),
        ForeignKeyConstraint(["tenant_id", "code_id"], ["codes.tenant_id", "codes.id"]),
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_grant_items_grant", "tenant_id", "grant_id"),
        Index("ix_grant_items_code", "tenant_id", "code_id"),
        Index("ix_grant_items_holder", "tenant_id", "member_id", "status", "expires_at"),
        status_check(ITEM_STATUSES),
    )
    grant_id: Mapped[uuid.UUID]
    code_id: Mapped[uuid.UUID]
    member_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(20), default="held")
    expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    transferred_to_id: Mapped[uuid.UUID | None] = mapped_column(
        default=None
    )  # the item that replaced this one
    reminded_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # First time the plaintext left kaquan (API reveal, H5 code page): such a code never goes back to stock.
    revealed_at: Mapped[dt.datetime | None] = mapped_column(default=None)


DELIVERY_SEND_STATUSES = ("sending", "sent", "failed", "rejected")


class GrantDelivery(TenantScoped):
    """The send state of a grant's delivery, committed *before* the notifier is called.

    No row: pending (never tried). ``sending``: an attempt was recorded and may or may not have reached
    the provider (a crash, or the commit after the send failing, leaves it here); a retry sends again with
    the same ``idempotency_key`` so the provider dedupes. ``sent``: the provider accepted it (final).
    ``failed``: the last attempt did not go out (retryable); ``rejected``: it never will.
    """

    __tablename__ = "grant_deliveries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "grant_id"),
        ForeignKeyConstraint(["tenant_id", "grant_id"], ["grants.tenant_id", "grants.id"]),
    )
    grant_id: Mapped[uuid.UUID]
    idempotency_key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="sending")
    attempts: Mapped[int] = mapped_column(default=0)
    connector: Mapped[str | None] = mapped_column(String(64), default=None)
    provider_message_id: Mapped[str | None] = mapped_column(String(200), default=None)
    detail: Mapped[str | None] = mapped_column(String(500), default=None)
    attempted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
