"""Claim links and the one-time phone codes that confirm them (campaigns: ``core.campaigns.models``)."""

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
    # First time the page behind the link was viewed (the funnel's "opened"; set once, never moved).
    opened_at: Mapped[dt.datetime | None] = mapped_column(default=None)


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
