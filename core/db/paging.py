"""Keyset ("cursor") paging: one page of a select ordered by a unique key, and the cursor to the next.

A list endpoint builds its select with its filters (no ``order_by``, no ``limit``) and hands it to
:func:`keyset_page` with the unique key to order by (the id, or the audit ``seq``). The helper orders by
the key (newest first unless ``descending=False``), continues strictly after ``cursor``, fetches one row
more than ``limit`` to learn whether another page follows, and returns a :class:`Page`: the items and
``next_cursor``, the key of the last item when there is more, else ``None``. The client passes that
value back unchanged as ``cursor``; it is the bare key (a UUID or an integer), as it has always been.

Example::

    page = await keyset_page(session, select(Batch).where(Batch.product_id == pid), Batch.id,
                             cursor=cursor, limit=limit)
    return BatchPage([batch_out(b) for b in page.items], page.next_cursor)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import msgspec
from sqlalchemy import Row, Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

T = TypeVar("T")
U = TypeVar("U")
#: The type of the key a list is ordered by, and so of its cursor (a UUID id, or an integer ``seq``).
K = TypeVar("K", uuid.UUID, int)


class Page(msgspec.Struct, Generic[T, K]):
    """One page of a list: ``items`` and ``next_cursor`` (``None`` on the last page), the bare value of the
    key the list is ordered by (``Page[Product, uuid.UUID]``)."""

    items: list[T]
    next_cursor: K | None = None

    def map(self, fn: Callable[[T], U]) -> Page[U, K]:
        """The same page with every item passed through ``fn`` (e.g. a model to its API Struct)."""
        return Page([fn(item) for item in self.items], self.next_cursor)

    @classmethod
    def cut(cls, rows: Sequence[T], limit: int, cursor_of: Callable[[T], K]) -> Page[T, K]:
        """The page from ``rows`` fetched with ``limit + 1``: the first ``limit`` rows, and the cursor of
        the last of them when the extra row shows that more follow."""
        items = list(rows[:limit])
        more = len(rows) > limit and bool(items)
        return cls(items, cursor_of(items[-1]) if more else None)


def keyset_select(
    stmt: Select,
    key: InstrumentedAttribute[K],
    *,
    cursor: K | None,
    limit: int,
    descending: bool = True,
) -> Select:
    """``stmt`` ordered by ``key``, strictly after ``cursor``, limited to ``limit + 1`` rows."""
    if cursor is not None:
        stmt = stmt.where(key < cursor if descending else key > cursor)
    return stmt.order_by(key.desc() if descending else key.asc()).limit(limit + 1)


async def keyset_page(
    session: AsyncSession,
    stmt: Select[T],
    key: InstrumentedAttribute[K],
    *,
    cursor: K | None,
    limit: int,
    descending: bool = True,
) -> Page[T, K]:
    """One page of ``stmt`` — a select of one entity (or one column), without ``order_by``/``limit`` —
    ordered by the unique ``key``; ``next_cursor`` is the ``key`` attribute of the page's last item."""
    stmt = keyset_select(stmt, key, cursor=cursor, limit=limit, descending=descending)
    rows = list((await session.execute(stmt)).scalars())
    name = key.key
    return Page.cut(rows, limit, lambda item: getattr(item, name))


async def keyset_rows(
    session: AsyncSession,
    stmt: Select,
    key: InstrumentedAttribute[K],
    *,
    cursor: K | None,
    limit: int,
    descending: bool = True,
) -> Page[Row, K]:
    """:func:`keyset_page` for a select of several columns: the items are rows, and ``key`` must be one
    of the selected columns (the cursor is read from the row by its name)."""
    stmt = keyset_select(stmt, key, cursor=cursor, limit=limit, descending=descending)
    rows = (await session.execute(stmt)).all()
    name = key.key
    return Page.cut(rows, limit, lambda row: getattr(row, name))
