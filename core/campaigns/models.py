"""Campaigns: public claim pages for a product, and the per-member claim slots that keep their limit exact."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKeyConstraint, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import Base, TenantScoped, Timestamped


class Campaign(TenantScoped):
    """A public claim page: each visitor (by confirmed phone) may claim ``quantity`` units of a product,
    at most ``per_member_limit`` times, between ``starts_at`` and ``ends_at`` while ``active``.

    ``active`` is the pause switch (editable); ``stopped_at`` marks a campaign the tenant ended early: it stays
    closed whatever its window or ``active`` say, until it is explicitly resumed.
    """

    __tablename__ = "campaigns"
    __table_args__ = (
        UniqueConstraint("tenant_id", "ref"),
        ForeignKeyConstraint(["tenant_id", "product_id"], ["products.tenant_id", "products.id"]),
        UniqueConstraint("tenant_id", "short_code"),
        Index("ix_campaigns_short_code", "short_code"),
    )
    ref: Mapped[str] = mapped_column(String(20))
    # The short link ``/c/<short_code>``: 4–8 Crockford base32 characters, unique on the whole platform
    # (reserved in :class:`ShortCode`); read by code alone under a named bypass (the link names no tenant).
    short_code: Mapped[str | None] = mapped_column(String(8), default=None)
    name: Mapped[str] = mapped_column(String(200))
    product_id: Mapped[uuid.UUID]
    quantity: Mapped[int] = mapped_column(default=1)
    per_member_limit: Mapped[int] = mapped_column(default=1)
    starts_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    ends_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    active: Mapped[bool] = mapped_column(default=True)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class CampaignClaim(TenantScoped):
    """The n-th claim of a member in a campaign; the unique ordinal makes the per-member limit exact."""

    __tablename__ = "campaign_claims"
    __table_args__ = (
        UniqueConstraint("tenant_id", "campaign_id", "member_id", "ordinal"),
        ForeignKeyConstraint(["tenant_id", "campaign_id"], ["campaigns.tenant_id", "campaigns.id"]),
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        ForeignKeyConstraint(["tenant_id", "grant_id"], ["grants.tenant_id", "grants.id"]),
    )
    campaign_id: Mapped[uuid.UUID]
    member_id: Mapped[uuid.UUID]
    ordinal: Mapped[int]
    grant_id: Mapped[uuid.UUID | None] = mapped_column(default=None)


class CampaignVisit(TenantScoped):
    """A visitor who opened the campaign's public page (the funnel's "opened"), once per visitor.

    ``visitor`` is a keyed digest of the visitor's address and browser (no personal data is kept); the unique
    key makes a repeated view a no-op (``INSERT … ON CONFLICT DO NOTHING``).
    """

    __tablename__ = "campaign_visits"
    __table_args__ = (
        UniqueConstraint("tenant_id", "campaign_id", "visitor"),
        ForeignKeyConstraint(["tenant_id", "campaign_id"], ["campaigns.tenant_id", "campaigns.id"]),
    )
    campaign_id: Mapped[uuid.UUID]
    visitor: Mapped[str] = mapped_column(String(64))


class ShortCode(Base, Timestamped):
    """A short-link code taken on the platform: its primary key makes ``/c/<code>`` unique across tenants.

    A platform table holding no tenant data (only the code string): the campaign that owns the code holds it
    in ``campaigns.short_code`` and is found through it under a named cross-tenant bypass.
    """

    __tablename__ = "short_codes"
    code: Mapped[str] = mapped_column(String(8), primary_key=True)
