"""Run the alembic migrations programmatically (CLI, tests, benchmarks): always as the owner role."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from alembic import command

ROOT = Path(__file__).resolve().parent.parent.parent


def upgrade_head(owner_url: str, app_url: str, *, reset_app_password: bool = False) -> None:
    """``alembic upgrade heads`` as the owner; on PostgreSQL this also provisions the app role of ``app_url``.

    The role is created (with the password in ``app_url``) when the server has none of that name; an
    existing role keeps its password, which other databases on the server may rely on, unless
    ``reset_app_password`` is given.
    """
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes.update(
        owner_url=owner_url, app_url=app_url, configure_logging=False, reset_app_password=reset_app_password
    )
    command.upgrade(cfg, "heads")
