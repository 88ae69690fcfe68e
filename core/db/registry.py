"""Import every model module so ``Base.metadata`` is complete (for alembic and metadata tests)."""

from __future__ import annotations

import importlib

MODEL_MODULES = (
    "tenants.models",
    "core.crypto.models",
    "core.audit.models",
    "core.jobs.models",
    "core.http.models",
    "core.catalog.models",
    "core.inventory.models",
    "core.events.models",
    "core.members.models",
    "core.grants.models",
    "core.webhooks.models",
    "core.bulk_grants.models",
    "core.reminders.models",
    "core.claims.models",
    "core.campaigns.models",
    "core.risk.models",
    "core.redemption.models",
)


def load_all_models() -> None:
    for name in MODEL_MODULES:
        importlib.import_module(name)
