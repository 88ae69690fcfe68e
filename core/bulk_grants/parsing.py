"""Reading a recipient file: columns from Chinese or English headers, cells normalised, problems per row.

The file itself is opened by :func:`core.inventory.importing.parsing.open_upload` (size limit, CSV/TXT in
UTF-8, BOM, UTF-16 or GBK/GB18030, XLSX/XLS/ODS, binary refused). This module maps a header row to the
fields ``name``, ``phone``, ``email``, ``sku`` and ``quantity`` and turns each data row into a
:class:`RecipientRow` with its cell-level problems. A header row is required: recipient files are
spreadsheets people edit, and a header is what tells a phone column from a quantity column.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from core.errors import ValidationFailed
from core.inventory.importing.parsing import Upload, import_error
from core.members import services as members

FIELDS = ("name", "phone", "email", "sku", "quantity")
MIN_QUANTITY, MAX_QUANTITY = 1, 100
#: Characters of each cell kept as written (for the result file).
WRITTEN_MAX = 200


def too_large(size: int, limit: int) -> ValidationFailed:
    """``413 import_too_large``: the upload declares more bytes than may be uploaded at once."""
    return import_error(
        "import_too_large",
        f"The upload is {size} bytes; at most {limit} bytes can be uploaded at once — split the file",
        f"上传内容为 {size} 字节，单次最多上传 {limit} 字节，请拆分文件",
        status=413,
        size_bytes=size,
        max_bytes=limit,
    )


_ALIASES: dict[str, frozenset[str]] = {
    "name": frozenset(
        {"姓名", "名字", "员工姓名", "收件人", "领取人", "name", "fullname", "recipient", "employee"}
    ),
    "phone": frozenset(
        {
            "手机号",
            "手机号码",
            "手机",
            "电话",
            "电话号码",
            "联系电话",
            "联系方式",
            "手機",
            "手機號碼",
            "phone",
            "mobile",
            "phonenumber",
            "mobilephone",
            "cellphone",
            "tel",
            "telephone",
        }
    ),
    "email": frozenset(
        {"邮箱", "电子邮箱", "邮件", "电子邮件", "邮箱地址", "郵箱", "email", "mail", "emailaddress"}
    ),
    "sku": frozenset(
        {
            "商品编码",
            "商品编号",
            "商品",
            "权益编码",
            "权益商品",
            "sku",
            "skucode",
            "product",
            "productcode",
            "productsku",
            "item",
            "itemcode",
        }
    ),
    "quantity": frozenset(
        {"数量", "份数", "张数", "發放數量", "发放数量", "quantity", "qty", "count", "amount"}
    ),
}
#: Row problems, in the order the report lists them.
PROBLEMS = (
    "missing_contact",
    "bad_phone",
    "bad_email",
    "missing_sku",
    "unknown_sku",
    "product_inactive",
    "bad_quantity",
    "duplicate_in_file",
)


@dataclass
class RecipientColumns:
    """Which column holds which field (0-based), and the header as written."""

    indexes: dict[str, int]
    header: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, str | None]:
        """``{"name": "姓名", "phone": "手机号", "email": None, …}``."""
        return {f: (self.header[i] if (i := self.indexes.get(f)) is not None else None) for f in FIELDS}


@dataclass
class RecipientRow:
    """One data row: normalised values (``None`` when absent or bad) and its cell-level problems."""

    row: int
    name: str
    phone: str | None  # "+8613812345678"
    email: str | None  # domain lower-cased
    sku: str
    quantity: int
    problems: list[str] = field(default_factory=list)
    #: The cells as the file has them (``{"phone": "138 0013 8000", "quantity": "-2", …}``; empty cells left
    #: out), so the result file can show what the user wrote rather than what it was read as.
    written: dict[str, str] = field(default_factory=dict)

    @property
    def contact(self) -> str | None:
        """What identifies the recipient: the phone when there is one, else the e-mail."""
        return self.phone or self.email


def _norm_header(value: Any) -> str:
    text = str(value).strip().lower()
    text = re.sub(r"[(（\[【].*?[)）\]】]", "", text)
    return re.sub(r"[\s_\-.:：*#/\\'\"]+", "", text)


def cell_text(value: Any) -> str:
    """A cell as text: spreadsheet numbers without a trailing ``.0`` (a phone typed as a number); a date
    cell as its calendar date (``2025-01-01``: no time of day unless it has one, never moved to UTC)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds" if not value.microsecond else "microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value).strip().replace("\u3000", " ").strip()


def normalize_phone(raw: str) -> str | None:
    """A mainland mobile number as ``+86…`` (the members service's rule), else None."""
    try:
        return members.normalize_phone(raw)
    except ValidationFailed:
        return None


def normalize_email(raw: str) -> str | None:
    """An e-mail address as the members service keeps it (domain lower-cased), else None."""
    try:
        return members.normalize_email(raw)
    except ValidationFailed:
        return None


def parse_quantity(raw: Any) -> int | None:
    """A whole number of units in 1..100 (a blank cell means 1), else None."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return 1
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, float):
        if not raw.is_integer():
            return None
        value = int(raw)
    else:
        text = str(raw).strip().replace("，", "").replace(",", "")
        if not re.fullmatch(r"\d{1,6}(\.0+)?", text):
            return None
        value = int(float(text))
    return value if MIN_QUANTITY <= value <= MAX_QUANTITY else None


def resolve_columns(cells: list[Any]) -> RecipientColumns:
    """Map a header row to fields; needs a product column and a phone or e-mail column."""
    found: dict[str, int] = {}
    for i, cell in enumerate(cells):
        key = _norm_header(cell) if cell is not None else ""
        for name, aliases in _ALIASES.items():
            if key in aliases and name not in found:
                found[name] = i
                break
    header = [cell_text(c) for c in cells]
    if "sku" not in found or not ({"phone", "email"} & found.keys()):
        missing = [f for f in ("sku",) if f not in found] + (
            [] if {"phone", "email"} & found.keys() else ["phone|email"]
        )
        raise import_error(
            "bulk_missing_columns",
            "The first row must be a header naming the columns: 姓名/name, 手机号/phone or 邮箱/email, "
            "商品编码/SKU and 数量/quantity",
            "第一行须为表头，列名为：姓名、手机号或邮箱、商品编码（SKU）、数量",
            missing=missing,
            columns=header,
        )
    return RecipientColumns(found, header)


def _blank(cells: list[Any]) -> bool:
    return all(c is None or (isinstance(c, str) and not c.strip()) for c in cells)


def read_rows(upload: Upload, max_rows: int) -> tuple[RecipientColumns, list[RecipientRow]]:
    """The header's columns and every non-blank data row with its cell problems (SKUs not yet checked).

    More than ``max_rows`` data rows raise ``bulk_too_many_rows``; a header without rows ``import_empty``.
    """
    rows: Iterator[tuple[int, list[Any]]] = upload.rows()
    columns: RecipientColumns | None = None
    out: list[RecipientRow] = []
    for number, cells in rows:
        if _blank(cells):
            continue
        if columns is None:
            columns = resolve_columns(cells)
            continue
        if len(out) >= max_rows:
            raise import_error(
                "bulk_too_many_rows",
                f"At most {max_rows} recipients can be granted in one file — split it",
                f"单个文件最多 {max_rows} 位领取人，请拆分文件",
                max_rows=max_rows,
            )
        out.append(_row(number, cells, columns))
    if columns is None:
        raise import_error("import_empty", "The file is empty", "文件为空")
    if not out:
        raise ValidationFailed(
            "The file has a header but no recipients", "文件只有表头，没有领取人", code="import_empty"
        )
    return columns, out


def _cell(cells: list[Any], columns: RecipientColumns, name: str) -> Any:
    i = columns.indexes.get(name)
    return cells[i] if i is not None and i < len(cells) else None


def _row(number: int, cells: list[Any], columns: RecipientColumns) -> RecipientRow:
    problems: list[str] = []
    written = {f: text[:WRITTEN_MAX] for f in FIELDS if (text := cell_text(_cell(cells, columns, f)))}
    raw_phone = written.get("phone", "")
    raw_email = written.get("email", "")
    phone = normalize_phone(raw_phone) if raw_phone else None
    email = normalize_email(raw_email) if raw_email else None
    if not raw_phone and not raw_email:
        problems.append("missing_contact")
    if raw_phone and phone is None:
        problems.append("bad_phone")
    if raw_email and email is None:
        problems.append("bad_email")
    sku = cell_text(_cell(cells, columns, "sku"))[:64]
    if not sku:
        problems.append("missing_sku")
    quantity = parse_quantity(_cell(cells, columns, "quantity"))
    if quantity is None:
        problems.append("bad_quantity")
    name = cell_text(_cell(cells, columns, "name"))[:120]
    return RecipientRow(number, name, phone, email, sku, quantity or 0, problems, written)


def mask_contact(phone: str | None, email: str | None) -> str:
    """``138****5678`` or ``z***@example.com`` (what reports, results and the console show)."""
    if phone:
        local = phone[3:] if phone.startswith("+86") else phone
        return f"{local[:3]}****{local[-4:]}"
    if email:
        user, _, domain = email.partition("@")
        return f"{user[:1]}***@{domain}"
    return ""
