"""Expiry-reminder settings: ``GET`` / ``PUT /api/v1/reminder-settings`` (days before expiry, on/off)."""

from __future__ import annotations

from litestar import Controller, get, put
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from core.reminders.services import ReminderSettingIn, ReminderSettingOut, get_setting, set_setting
from tenants.guards import provide_db, require_scope


class ReminderSettingsController(Controller):
    path = "/api/v1/reminder-settings"
    tags = ["grants"]
    dependencies = {"db": Provide(provide_db)}

    @get("/", guards=[require_scope("grants:read")])
    async def show(self, db: AsyncSession) -> ReminderSettingOut:
        """The tenant's reminder window (default: 3 days before expiry, enabled)."""
        return await get_setting(db)

    @put("/", guards=[require_scope("grants:write")])
    async def update(self, db: AsyncSession, data: ReminderSettingIn) -> ReminderSettingOut:
        """Change ``days_before`` (1..90) and/or ``enabled``; omitted fields stay as they are."""
        return await set_setting(db, data)
