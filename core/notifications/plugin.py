"""The notifications domain: e-mail and SMS sent through notifier connectors."""

from core.domains import Domain

domain = Domain(name="notifications", jobs=("core.notifications.actors",))
