"""Keyset paging: pages follow the unique key, the cursor is the bare key of the page's last item, and the
last page has no cursor — for entity and column selects, newest or oldest first."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.db.paging import Page, keyset_page, keyset_rows


class _Base(DeclarativeBase):
    """A metadata of this test's own, apart from kaquan's."""


class _Row(_Base):
    __tablename__ = "paging_rows"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))


def _walk(descending: bool, limit: int, kind: str | None) -> list[list[int]]:
    async def go() -> list[list[int]]:
        engine = create_async_engine("sqlite+aiosqlite://")
        async with engine.begin() as conn:
            await conn.run_sync(_Base.metadata.create_all)
        pages: list[list[int]] = []
        async with AsyncSession(engine) as session:
            session.add_all(_Row(id=n, kind="odd" if n % 2 else "even") for n in range(1, 11))
            await session.flush()
            stmt, columns = select(_Row), select(_Row.id, _Row.kind)
            if kind is not None:
                stmt, columns = stmt.where(_Row.kind == kind), columns.where(_Row.kind == kind)
            cursor: int | None = None
            while True:
                page = await keyset_page(
                    session, stmt, _Row.id, cursor=cursor, limit=limit, descending=descending
                )
                pages.append([r.id for r in page.items])
                rows = await keyset_rows(
                    session, columns, _Row.id, cursor=cursor, limit=limit, descending=descending
                )
                assert [r.id for r in rows.items] == pages[-1] and rows.next_cursor == page.next_cursor
                if page.next_cursor is None:
                    break
                assert page.next_cursor == page.items[-1].id  # the bare key, as clients hold it
                cursor = page.next_cursor
        await engine.dispose()
        return pages

    return asyncio.run(go())


def test_newest_first_in_pages_of_three() -> None:
    assert _walk(True, 3, None) == [[10, 9, 8], [7, 6, 5], [4, 3, 2], [1]]


def test_oldest_first_with_a_filter_ending_exactly_on_a_page() -> None:
    assert _walk(False, 5, "odd") == [[1, 3, 5, 7, 9]]
    assert _walk(False, 2, "even") == [[2, 4], [6, 8], [10]]


def test_cut_and_map() -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    page = Page.cut(ids, 2, lambda i: i)
    assert (page.items, page.next_cursor) == (ids[:2], ids[1])
    assert Page.cut(ids, 3, lambda i: i).next_cursor is None
    assert page.map(str).items == [str(i) for i in ids[:2]] and page.map(str).next_cursor == ids[1]
