"""The tenant's expiry-reminder setting (one row per tenant; absent means the defaults)."""

from __future__ import annotations

from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TenantScoped

DEFAULT_DAYS_BEFORE = 3


class ReminderSetting(TenantScoped):
    """Remind members ``days_before`` days before their codes expire (``enabled`` switches it off)."""

    __tablename__ = "reminder_settings"
    __table_args__ = (UniqueConstraint("tenant_id"),)
    days_before: Mapped[int] = mapped_column(default=DEFAULT_DAYS_BEFORE)
    enabled: Mapped[bool] = mapped_column(default=True)
