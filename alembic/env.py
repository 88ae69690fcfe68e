"""Alembic environment: runs as the owner role; on PostgreSQL also provisions the app role."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from sqlalchemy import pool
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import context
from core.db.base import Base
from core.db.registry import load_all_models
from core.db.rls import secure_postgres
from core.settings import load_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

load_all_models()
target_metadata = Base.metadata


def _urls() -> tuple[str, str]:
    owner = config.attributes.get("owner_url")
    app = config.attributes.get("app_url")
    if not owner or not app:
        settings = load_settings()
        owner = owner or settings.owner_db_url
        app = app or settings.db_url
    return owner, app


def _do_run(connection: Connection, app_url: str) -> None:
    app_role = None
    if connection.dialect.name == "postgresql":
        app = make_url(app_url)
        owner_user = connection.exec_driver_sql("select current_user").scalar()
        if app.username and app.username != owner_user:
            app_role = (app.username, app.password)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        if connection.dialect.name == "postgresql":
            # RLS on every tenant table and the app role's rights are re-applied after every upgrade,
            # so a later migration cannot forget them (the catalog test checks the result).
            secure_postgres(
                connection, app_role, reset_app_password=bool(config.attributes.get("reset_app_password"))
            )


async def _run_async() -> None:
    owner_url, app_url = _urls()
    engine = create_async_engine(owner_url, poolclass=pool.NullPool)
    async with engine.connect() as conn:
        await conn.run_sync(_do_run, app_url)
        await conn.commit()
    await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _do_run(connection, _urls()[1])
        return
    asyncio.run(_run_async())


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `kaquan migrate`")
run_migrations_online()
