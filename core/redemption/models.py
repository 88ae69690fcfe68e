"""Redemptions (核销), per-code redemption accounts (use count, stored-value balance), the stored-value
ledger and the tenant's redemption settings."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, CheckConstraint, ForeignKeyConstraint, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped, utcnow

REDEMPTION_STATUSES = ("redeemed", "rolled_back")
LEDGER_KINDS = ("opening", "redeem", "rollback")
DEFAULT_ROLLBACK_WINDOW_MINUTES = 30


def _code_fk() -> ForeignKeyConstraint:
    return ForeignKeyConstraint(["tenant_id", "code_id"], ["codes.tenant_id", "codes.id"])


class Redemption(TenantScoped):
    """One redemption of a code (one use of a reusable code, one spend of a stored-value card).

    ``created_at`` is the moment of redemption; the rollback window is measured from it.
    """

    __tablename__ = "redemptions"
    __table_args__ = (
        _code_fk(),
        ForeignKeyConstraint(["tenant_id", "product_id"], ["products.tenant_id", "products.id"]),
        ForeignKeyConstraint(["tenant_id", "grant_item_id"], ["grant_items.tenant_id", "grant_items.id"]),
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        ForeignKeyConstraint(["tenant_id", "store_id"], ["stores.tenant_id", "stores.id"]),
        Index("ix_redemptions_code", "tenant_id", "code_id", "status"),
        Index("ix_redemptions_store", "tenant_id", "store", "id"),
        Index("ix_redemptions_last4", "tenant_id", "code_last4", "id"),
        Index("ix_redemptions_created", "tenant_id", "created_at"),
        Index("ix_redemptions_store_record", "tenant_id", "store_id", "created_at"),
        Index("ix_redemptions_user", "tenant_id", "user_id", "created_at"),
    )
    code_id: Mapped[uuid.UUID]
    product_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(20))
    code_last4: Mapped[str] = mapped_column(String(4))
    grant_item_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    member_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    #: The store as named when redeemed (its name once stores are records; free text before that).
    store: Mapped[str] = mapped_column(String(64), default="")
    #: The store record (``core.stores``), when the redemption named one.
    store_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    terminal: Mapped[str] = mapped_column(String(64), default="")
    reference: Mapped[str | None] = mapped_column(String(120), default=None)
    amount: Mapped[int | None] = mapped_column(BigInteger, default=None)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    balance_after: Mapped[int | None] = mapped_column(BigInteger, default=None)
    use_number: Mapped[int | None] = mapped_column(default=None)
    user_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    client_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(20), default="redeemed")
    rolled_back_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    rollback_reason: Mapped[str | None] = mapped_column(String(500), default=None)


class CodeAccount(TenantScoped):
    """What a reusable code or stored-value card has used so far: the use count and the balance (fen).

    Changed only by conditional UPDATEs (``uses < limit``, ``balance >= amount``); the CHECK constraints
    are the last line: a balance can never go negative, whatever the code does.
    """

    __tablename__ = "code_accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code_id"),
        _code_fk(),
        CheckConstraint("balance IS NULL OR balance >= 0", name="balance_not_negative"),
        CheckConstraint("uses >= 0", name="uses_not_negative"),
    )
    code_id: Mapped[uuid.UUID]
    uses: Mapped[int] = mapped_column(default=0)
    balance: Mapped[int | None] = mapped_column(BigInteger, default=None)
    initial_balance: Mapped[int | None] = mapped_column(BigInteger, default=None)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LedgerEntry(TenantScoped):
    """One movement of a stored-value balance: the opening balance, a spend, or a rolled-back spend."""

    __tablename__ = "stored_value_entries"
    __table_args__ = (
        _code_fk(),
        ForeignKeyConstraint(["tenant_id", "redemption_id"], ["redemptions.tenant_id", "redemptions.id"]),
        CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
        Index("ix_stored_value_entries_code", "tenant_id", "code_id", "id"),
    )
    code_id: Mapped[uuid.UUID]
    redemption_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    kind: Mapped[str] = mapped_column(String(20))
    delta: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)


class RedemptionSettings(TenantScoped):
    """The tenant's redemption settings (one row per tenant; absent = defaults)."""

    __tablename__ = "redemption_settings"
    __table_args__ = (UniqueConstraint("tenant_id"),)
    rollback_window_minutes: Mapped[int] = mapped_column(default=DEFAULT_ROLLBACK_WINDOW_MINUTES)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
