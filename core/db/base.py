"""Declarative bases. Tenant tables use :class:`TenantScoped`: primary key ``(tenant_id, id)``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import ClassVar

from sqlalchemy import DateTime, ForeignKey, MetaData, Table, Uuid, func
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column
from sqlalchemy.types import TypeDecorator

from core.db.context import require_tenant
from core.db.ids import new_id

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; kaquan stores timezone-aware UTC only")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    # Every kaquan model maps a Table (none maps a join or a subquery), so say so to the type checker:
    # DeclarativeBase types it as FromClause, which Core insert()/update()/delete() do not accept.
    __table__: ClassVar[Table]
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime(), uuid.UUID: Uuid()}


class Timestamped:
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())


class PlatformModel(Base, Timestamped):
    """A platform-level table (tenants, plans, operators): no tenant_id, no RLS."""

    __abstract__ = True
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id, sort_order=-90)


# ``Column.info`` flag of the tenant column of every tenant table (the engine checks inserts that name it).
TENANT_COLUMN = "kaquan_tenant_column"


class TenantScoped(Base, Timestamped):
    """A tenant table. ``tenant_id`` is stamped on insert from the context and filtered on every query.

    The column's default is the tenant in context, so ORM flushes and Core ``insert()`` statements alike get
    it without naming it (and fail with :class:`~core.db.context.TenantContextMissing` when there is none).
    Foreign keys to other tenant tables must be composite ``(tenant_id, x_id)``.
    """

    __abstract__ = True

    @declared_attr
    def tenant_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(
            ForeignKey("tenants.id", ondelete="RESTRICT"),
            primary_key=True,
            default=require_tenant,
            sort_order=-100,
            info={TENANT_COLUMN: True},
        )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id, sort_order=-90)
