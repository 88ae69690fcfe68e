"""The reminders domain: expiry reminders to members holding unredeemed codes."""

import datetime as dt

from core.domains import ADMINS, Domain, Periodic

domain = Domain(
    name="reminders",
    api=("core.reminders.api:ReminderSettingsController",),
    console=("admin_ui.reminders_pages:RemindersController",),
    models=("core.reminders.models",),
    jobs=("core.reminders.jobs",),
    periodic=(Periodic("remind_expiring_codes", "remind_expiring_codes", dt.timedelta(hours=1)),),
    permissions={"reminders.manage": ADMINS},
)
