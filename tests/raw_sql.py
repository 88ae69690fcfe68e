"""An engine for tests that run raw SQL as the app role, outside kaquan's own engine and its checks."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from core.settings import Settings


def app_role_engine(settings: Settings) -> AsyncEngine:
    """A plain engine on ``settings.db_url`` (no tenant checks), with the statement settings kaquan's engine
    uses: behind PgBouncer in transaction pooling mode no named prepared statement may outlive its
    transaction, or the next one looks for it on another server connection ("prepared statement … does
    not exist")."""
    if settings.db_pgbouncer and settings.db_url.startswith("postgresql+asyncpg"):
        return create_async_engine(
            settings.db_url, connect_args={"statement_cache_size": 0, "prepared_statement_cache_size": 0}
        )
    return create_async_engine(settings.db_url)
