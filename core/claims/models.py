"""Claim links, one-time phone codes, campaigns and the per-member claim slots of a campaign."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKeyConstraint, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped

LINK_SOURCES = ("api", "transfer")
LINK_STATUSES = ("open", "bound")
OTP_PURPOSES = ("link", "campaign")


class ClaimLink(TenantScoped):
    """A signed, expiring link to a grant's held items (or to one item, for a transfer).

    ``phone_digest`` is the phone that must confirm the link: known up front when the grant's member (or a
    transfer's recipient) has a phone, otherwise set by the first successful confirmation (binding).
    After binding, ``member_id`` is the holder and only that phone can open the codes.
    """

    __tablename__ = "claim_links"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "grant_id"], ["grants.tenant_id", "grants.id"]),
        ForeignKeyConstraint(["tenant_id", "item_id"], ["grant_items.tenant_id", "grant_items.id"]),
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_claim_links_grant", "tenant_id", "grant_id"),
    )
    grant_id: Mapped[uuid.UUID]
    item_id: Mapped[uuid.UUID | None] = mapped_column(default=None)  # one item (transfer) or all held
    member_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    phone_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    phone_masked: Mapped[str | None] = mapped_column(String(20), default=None)
    source: Mapped[str] = mapped_column(String(20), default="api")
    status: Mapped[str] = mapped_column(String(20), default="open")
    expires_at: Mapped[dt.datetime]
    bound_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    client_id: Mapped[uuid.UUID | None] = mapped_column(default=None)


class OtpChallenge(TenantScoped):
    """The one-time code last sent for a subject (a link, or a campaign and a phone), kept as a keyed digest.

    Attempts survive a resend; five wrong codes lock the subject for a while.
    """

    __tablename__ = "otp_challenges"
    __table_args__ = (UniqueConstraint("tenant_id", "purpose", "subject"),)
    purpose: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(100))
    phone_digest: Mapped[str] = mapped_column(String(64))
    phone_secret: Mapped[bytes] = mapped_column(LargeBinary)
    code_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    send_count: Mapped[int] = mapped_column(default=0)


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
    )
    ref: Mapped[str] = mapped_column(String(20))
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
