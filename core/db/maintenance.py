"""Database upkeep the app itself triggers: fresh planner statistics after bulk loads."""

from __future__ import annotations

import structlog
from sqlalchemy import text

from core.db.session import Database

log = structlog.get_logger(__name__)


async def refresh_statistics(db: Database, *tables: str) -> None:
    """ANALYZE ``tables`` in a short transaction of its own (after the load committed).

    Autovacuum would get there within a minute or so; until then allocations on a freshly imported batch
    run with no statistics and plan a sort of every available code. PostgreSQL goes through the
    ``kaquan_analyze`` definer function (the app role does not own the tables).
    """
    async with db.transaction() as session:
        for table in tables:
            if db.dialect == "postgresql":
                await session.execute(text("SELECT kaquan_analyze(CAST(:t AS regclass))"), {"t": table})
            else:
                await session.execute(text(f'ANALYZE "{table}"'))
    log.info("statistics_refreshed", tables=list(tables))
