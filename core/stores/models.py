"""Stores (门店) and the binding of clerks (核销员) to stores."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKeyConstraint, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped, utcnow


class Store(TenantScoped):
    """A store of the tenant. ``code`` is short and unique per tenant (upper case), ``name`` too: a
    redemption that names its store by text is matched on either."""

    __tablename__ = "stores"
    __table_args__ = (UniqueConstraint("tenant_id", "code"), UniqueConstraint("tenant_id", "name"))
    code: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(64))
    province: Mapped[str] = mapped_column(String(40), default="")
    city: Mapped[str] = mapped_column(String(40), default="")
    district: Mapped[str] = mapped_column(String(40), default="")
    address: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str] = mapped_column(String(30), default="")
    active: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StoreClerk(TenantScoped):
    """A clerk (a console user with the ``clerk`` role) who may redeem at a store."""

    __tablename__ = "store_clerks"
    __table_args__ = (
        UniqueConstraint("tenant_id", "user_id", "store_id"),
        ForeignKeyConstraint(
            ["tenant_id", "store_id"], ["stores.tenant_id", "stores.id"], ondelete="CASCADE"
        ),
        ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"], ondelete="CASCADE"),
        Index("ix_store_clerks_store", "tenant_id", "store_id"),
    )
    store_id: Mapped[uuid.UUID]
    user_id: Mapped[uuid.UUID]
