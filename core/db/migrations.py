"""Run the alembic migrations programmatically (CLI, tests, benchmarks): always as the owner role."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from alembic import command

ROOT = Path(__file__).resolve().parent.parent.parent


def upgrade_head(owner_url: str, app_url: str) -> None:
    """``alembic upgrade heads`` as the owner; on PostgreSQL this also provisions the app role of ``app_url``."""
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes.update(owner_url=owner_url, app_url=app_url, configure_logging=False)
    command.upgrade(cfg, "heads")
