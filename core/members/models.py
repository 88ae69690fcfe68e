"""A member of a tenant (an end user), identified by the tenant's external id, phone or e-mail."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import JSON, ForeignKeyConstraint, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped

MEMBER_SOURCES = ("api", "import", "claim", "console", "grant")
MEMBER_STATUSES = ("active", "blocked")


class Member(TenantScoped):
    """One end user. The phone is kept as an HMAC digest (lookup, uniqueness), a masked form (display)
    and an AES-GCM ciphertext under the tenant's data key (so reminders and one-time codes can be sent)."""

    __tablename__ = "members"
    __table_args__ = (
        UniqueConstraint("tenant_id", "external_id"),
        UniqueConstraint("tenant_id", "phone_digest"),
        Index("ix_members_email", "tenant_id", "email"),
    )
    external_id: Mapped[str | None] = mapped_column(String(120), default=None)
    phone_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    phone_masked: Mapped[str | None] = mapped_column(String(20), default=None)
    phone_secret: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    email: Mapped[str | None] = mapped_column(String(254), default=None)
    name: Mapped[str | None] = mapped_column(String(120), default=None)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(String(20), default="api")
    status: Mapped[str] = mapped_column(String(20), default="active")


CONSENT_SOURCES = ("claim", "campaign", "login", "transfer", "api")


class MemberConsent(TenantScoped):
    """A member's consent to the tenant's privacy policy, given before a phone number was collected: when,
    which policy version, from which page (``source``), for which phone (digest and mask) and member."""

    __tablename__ = "member_consents"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_member_consents_phone", "tenant_id", "phone_digest", "consented_at"),
    )
    member_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    phone_digest: Mapped[str] = mapped_column(String(64))
    phone_masked: Mapped[str] = mapped_column(String(20))
    policy_version: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(20))
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    consented_at: Mapped[dt.datetime]
