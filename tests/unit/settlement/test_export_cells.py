"""The settlement workbook writes channel text as text: no formula from a value starting with ``=``, no
refusal (a 500) from a control character a channel put in an order id or SKU."""

from __future__ import annotations

import io

from openpyxl import Workbook, load_workbook  # type: ignore[import-untyped]  # openpyxl ships no type hints

from core.settlement.settlement_export import _append


def test_channel_text_is_written_as_text() -> None:
    book = Workbook(write_only=True)
    sheet = book.create_sheet("Lines")
    _append(sheet, [('=HYPERLINK("http://x.example","click")', "SKU\x0b-1", 1250)])
    out = io.BytesIO()
    book.save(out)
    cells = next(load_workbook(io.BytesIO(out.getvalue()))["Lines"].iter_rows(values_only=False))
    assert cells[0].value == '=HYPERLINK("http://x.example","click")' and cells[0].data_type == "s"
    assert cells[1].value == "SKU-1"
    assert cells[2].value == 1250 and cells[2].data_type == "n"
