"""How a tenant presents itself to its members: the name and logo on the H5 pages, and the signature and
texts of the SMS its notifier accounts send (one-time codes, claim links, expiry reminders)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped


class TenantBranding(TenantScoped):
    """One row per tenant (unique ``tenant_id``); absent until the tenant saves its settings."""

    __tablename__ = "tenant_branding"
    __table_args__ = (UniqueConstraint("tenant_id", name="uq_tenant_branding_tenant_id"),)
    display_name: Mapped[str] = mapped_column(String(40), default="")
    logo: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    logo_type: Mapped[str | None] = mapped_column(String(20), default=None)
    logo_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    sms_signature: Mapped[str] = mapped_column(String(20), default="")
    sms_templates: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[dt.datetime | None] = mapped_column(default=None)
