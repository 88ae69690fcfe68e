"""Writing list exports as XLSX: an openpyxl write-only workbook (rows go to temporary files, not memory),
saved to a temporary file and read back once; text cells stay text (no formula injection from a value that
starts with ``=``), and characters XLSX cannot hold are dropped.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

from openpyxl import Workbook  # type: ignore[import-untyped]  # openpyxl ships no type hints
from openpyxl.cell import WriteOnlyCell  # type: ignore[import-untyped]  # openpyxl ships no type hints
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE  # type: ignore[import-untyped]  # no type hints

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _cell(sheet: Any, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    cell = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub("", value))
    cell.data_type = "s"
    return cell


def _build(title: str, head: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title)
    sheet.append([_cell(sheet, h) for h in head])
    for row in rows:
        sheet.append([_cell(sheet, v) for v in row])
    with tempfile.TemporaryFile(suffix=".xlsx") as fh:
        book.save(fh)
        fh.seek(0)
        return fh.read()


async def workbook(title: str, head: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    """The bytes of a one-sheet workbook (built in a thread: it is CPU work)."""
    return await asyncio.to_thread(_build, title, head, rows)
