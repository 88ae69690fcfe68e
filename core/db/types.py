"""Database types the layers above name without importing SQLAlchemy.

The console and the H5 pages receive the request's session from :func:`tenants.guards.provide_db` and
hand it, unopened, to the services; they annotate it with :data:`DbSession` so that SQLAlchemy stays an
implementation detail of ``core``.
"""

from __future__ import annotations

from typing import TypeAlias

from sqlalchemy.ext.asyncio import AsyncSession

DbSession: TypeAlias = AsyncSession
"""The request's (or job's) database session, passed opaquely to services."""
