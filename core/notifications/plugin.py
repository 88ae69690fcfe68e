"""The notifications domain: e-mail and SMS sent through notifier connectors."""

from core.domains import Domain

domain = Domain(
    name="notifications",
    console=("admin_ui.settings_pages:SettingsController",),
    models=("core.notifications.models",),
    jobs=("core.notifications.actors",),
)
