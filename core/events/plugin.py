"""The events domain: the tenant's event feed (each domain declares the event types it emits)."""

from core.domains import Domain

domain = Domain(
    name="events",
    api=("core.events.api:EventsController",),
    models=("core.events.models",),
    scopes={"events:read": "Read the tenant's event feed (stock alerts and other domain events)."},
)
