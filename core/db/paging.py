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
from typing import Any, Generic, TypeVar

import msgspec
from sqlalchemy import Row, Select, func, select
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


class NumberedPage(msgspec.Struct, Generic[T]):
    """One page of a list people page through by number (console lists): the items, the total count of the
    filtered list, this page's number (1-based, clamped to the last page) and the page size."""

    items: list[T]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        """How many pages the list has (at least 1: an empty list is one empty page)."""
        return max(1, -(-self.total // self.per_page))

    def window(self, around: int = 2) -> list[int | None]:
        """Page numbers to show: the first, the last and ``around`` either side of this one; ``None`` marks a
        gap ("…")."""
        shown = sorted(
            {1, self.pages, *range(max(1, self.page - around), min(self.pages, self.page + around) + 1)}
        )
        out: list[int | None] = []
        for n in shown:
            if out and n - (out[-1] or 0) > 1:
                out.append(None)
            out.append(n)
        return out


async def numbered_page(
    session: AsyncSession,
    stmt: Select[T],
    key: InstrumentedAttribute[Any],
    *,
    page: int,
    per_page: int,
    descending: bool = True,
) -> NumberedPage[T]:
    """Page ``page`` of ``stmt`` (a select of one entity, with its filters, no ``order_by``/``limit``) ordered by
    the unique ``key``, with the total from ``SELECT count(*)`` over the same filtered select.

    Meant for console lists of moderate size: the count and the ``OFFSET`` both read the rows before the
    page through the tenant's index, which stays cheap (milliseconds to a few hundred) up to about a million
    rows; a list that can grow past that keeps :func:`keyset_page` (no total) instead.
    """
    total = int(
        (await session.execute(select(func.count()).select_from(stmt.order_by(None).subquery()))).scalar_one()
    )
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    ordered = (
        stmt.order_by(key.desc() if descending else key.asc()).offset((page - 1) * per_page).limit(per_page)
    )
    items = list((await session.execute(ordered)).scalars())
    return NumberedPage(items, total, page, per_page)
