"""Database types the layers above the services may name without importing SQLAlchemy.

The consoles (``admin_ui``, ``h5``) receive the request's session from ``tenants.guards.provide_db`` and
hand it to services unopened; they annotate it with :data:`DbSession` (the services own every query and
every commit).
"""

from __future__ import annotations

from typing import TypeAlias

from sqlalchemy.ext.asyncio import AsyncSession

DbSession: TypeAlias = AsyncSession
"""The request's unit of work, as a page passes it to the services."""
