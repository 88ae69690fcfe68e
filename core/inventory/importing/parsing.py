"""Reading what suppliers really send, as a stream of rows.

:func:`open_upload` sniffs a seekable binary file: spreadsheets (XLSX/XLSM/XLS/XLSB/ODS, first sheet,
read with python-calamine) by their magic bytes, everything else as text — UTF-8, UTF-8 with BOM,
UTF-16 with BOM, or a legacy encoding detected with charset-normalizer (GB18030 whenever a GB-family
encoding is among the candidates: it is a superset of GBK and GB2312). Text is split by the delimiter most
sample lines share: tab, comma, ``----`` (卡号----卡密), full-width comma, semicolon, ``|`` or whitespace,
else one code per line. :func:`records` then finds the header row below any title rows (the first of the
first 20 rows naming known columns, Chinese or English), maps the columns to ``number``, ``pin`` and
``expires_at`` (from that header, an explicit :class:`ColumnMapping`, or by position only when the cells
look like codes — otherwise the file is refused with a request to map the columns) and streams
:class:`Record` tuples. Nothing is read into one big list; the file is decoded incrementally.
Whole-file problems raise :class:`~core.errors.ValidationFailed` with a stable code.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain, pairwise
from typing import IO, Any, NamedTuple

import charset_normalizer
import msgspec

from core.errors import ValidationFailed

FIELDS = ("number", "pin", "expires_at")
TEXT_EXTENSIONS = frozenset({"csv", "txt", "tsv", "text", "dat"})
SHEET_EXTENSIONS = frozenset({"xlsx", "xlsm", "xls", "xlsb", "ods"})
#: Bytes looked at to sniff the format and the delimiter.
HEAD_BYTES = 64 * 1024
READ_CHUNK = 1024 * 1024
SAMPLE_LINES = 50
_GB_FAMILY = {"gb2312", "gbk", "gb18030", "hz", "gb2312_80", "euc_cn", "cp936", "ms936"}
# (bytes at offset 0, what they are): files that are certainly not text and not a spreadsheet we read.
_BINARY_MAGIC: tuple[tuple[bytes, tuple[str, str]], ...] = (
    (b"\x89PNG", ("a PNG image", "PNG 图片")),
    (b"\xff\xd8\xff", ("a JPEG image", "JPEG 图片")),
    (b"GIF8", ("a GIF image", "GIF 图片")),
    (b"%PDF", ("a PDF document", "PDF 文档")),
    (b"\x1f\x8b", ("a gzip archive", "gzip 压缩包")),
    (b"Rar!", ("a RAR archive", "RAR 压缩包")),
    (b"7z\xbc\xaf", ("a 7-Zip archive", "7-Zip 压缩包")),
    (b"\x7fELF", ("a program", "可执行程序")),
    (b"MZ", ("a program", "可执行程序")),
)
_BINARY_DATA = ("binary data", "二进制数据")
_ZIP_ARCHIVE = ("a zip archive", "zip 压缩包")
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def import_error(code: str, en: str, zh: str, *, status: int | None = None, **extra: Any) -> ValidationFailed:
    """A whole-file problem (never echoes file content)."""
    return ValidationFailed(en, zh, code=code, status=status, extra=extra or None)


class ColumnMapping(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Which column holds what: a header name or a 0-based column index; ``header`` forces header detection."""

    number: int | str | None = None
    pin: int | str | None = None
    expires_at: int | str | None = None
    header: bool | None = None


class Record(NamedTuple):
    """One data row after column mapping: raw cell values (str, or what the spreadsheet holds)."""

    row: int
    number: Any
    pin: Any
    expires_at: Any


@dataclass
class Columns:
    """The column mapping in use, for the report (``header_row``: the header's row number in the file)."""

    number: int
    pin: int | None
    expires_at: int | None
    has_header: bool
    header: list[str] = field(default_factory=list)
    header_row: int | None = None

    def describe(self) -> dict[str, str | None]:
        """``{"number": "卡号", "pin": "卡密", "expires_at": None}`` (header names, or ``column 2``)."""
        out: dict[str, str | None] = {}
        for name in FIELDS:
            idx = getattr(self, name)
            if idx is None:
                out[name] = None
            elif self.has_header and idx < len(self.header) and self.header[idx]:
                out[name] = self.header[idx]
            else:
                out[name] = f"column {idx + 1}"
        return out


@dataclass
class Upload:
    """An opened upload: its format, encoding and delimiter, and a way to stream its rows."""

    file: IO[bytes]
    filename: str
    size: int
    file_format: str  # csv | txt | tsv | paste | xlsx | xls | ods …
    kind: str  # text | sheet
    encoding: str | None = None
    delimiter: str | None = None

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        """``(row number, cells)`` for every row (1-based, as a spreadsheet or editor counts them)."""
        if self.kind == "sheet":
            return _sheet_rows(self.file)
        return _text_rows(self.file, self.encoding or "utf-8", self.delimiter)


# --------------------------------------------------------------------------------------------- sniffing


def _extension(filename: str) -> str:
    name = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    return name.rsplit(".", 1)[1].lower() if "." in name else ""


def _size(f: IO[bytes]) -> int:
    f.seek(0, io.SEEK_END)
    size = f.tell()
    f.seek(0)
    return size


def open_upload(
    f: IO[bytes], filename: str = "", *, max_bytes: int, encoding: str | None = None
) -> Upload:
    """Sniff ``f`` (a seekable binary file) and return an :class:`Upload`; whole-file errors raise.

    ``filename`` may be empty for pasted text. ``encoding`` overrides detection for text files.
    """
    ext = _extension(filename)
    if ext and ext not in TEXT_EXTENSIONS | SHEET_EXTENSIONS:
        raise import_error(
            "import_unknown_format",
            f"Files of type .{ext} cannot be imported; send CSV, TXT or Excel (XLSX/XLS)",
            f"不支持导入 .{ext} 文件，请使用 CSV、TXT 或 Excel（XLSX/XLS）",
            extension=ext,
        )
    size = _size(f)
    if size > max_bytes:
        raise import_error(
            "import_too_large",
            f"The file is {size} bytes; at most {max_bytes} bytes can be imported at once — split it",
            f"文件大小为 {size} 字节，单次最多导入 {max_bytes} 字节，请拆分后再导入",
            status=413,
            size_bytes=size,
            max_bytes=max_bytes,
        )
    head = f.read(HEAD_BYTES)
    f.seek(0)
    if not head.strip(b" \t\r\n\x00\xef\xbb\xbf\xfe\xff"):
        raise _empty()
    if head.startswith(_ZIP_MAGIC) or head.startswith(_OLE_MAGIC):
        return _open_sheet(f, filename, ext, size, head)
    if ext in SHEET_EXTENSIONS:
        raise import_error(
            "import_bad_spreadsheet",
            "The file is named like a spreadsheet but is not an Excel or ODS workbook",
            "文件扩展名是电子表格，但内容不是 Excel 或 ODS 工作簿",
        )
    for magic, what in _BINARY_MAGIC:
        if head.startswith(magic):
            raise _binary(what)
    enc = _text_encoding(f, head, encoding)
    delimiter = _delimiter(head, enc, ext)
    fmt = ext if ext in ("csv", "tsv") else ("txt" if ext else "paste")
    return Upload(f, filename, size, fmt, "text", enc, delimiter)


def _empty() -> ValidationFailed:
    return import_error("import_empty", "The file is empty: there is no code in it", "文件为空，没有任何卡密")


def _binary(what: tuple[str, str] = _BINARY_DATA) -> ValidationFailed:
    """A file that is neither text nor a spreadsheet; ``what`` is (English, Chinese), each message in its language."""
    return import_error(
        "import_binary",
        f"The file is not text or a spreadsheet ({what[0]}); export it from your spreadsheet as CSV or XLSX",
        f"文件不是文本或电子表格（{what[1]}），请从表格软件另存为 CSV 或 XLSX",
    )


def _open_sheet(f: IO[bytes], filename: str, ext: str, size: int, head: bytes) -> Upload:
    if head.startswith(_ZIP_MAGIC) and not _is_workbook_zip(f):
        if ext in SHEET_EXTENSIONS:
            raise _bad_sheet()
        raise _binary(_ZIP_ARCHIVE)  # an XLSX renamed .csv is read as what it is; other archives are not
    from python_calamine import CalamineError, CalamineWorkbook  # imported when a sheet is opened

    try:
        CalamineWorkbook.from_filelike(f).close()
    except (CalamineError, OSError, ValueError):
        raise _bad_sheet() from None
    finally:
        f.seek(0)
    fmt = ext if ext in SHEET_EXTENSIONS else ("xls" if head.startswith(_OLE_MAGIC) else "xlsx")
    return Upload(f, filename, size, fmt, "sheet")


def _bad_sheet() -> ValidationFailed:
    return import_error(
        "import_bad_spreadsheet",
        "The spreadsheet cannot be read (damaged, password-protected or not a workbook)",
        "无法读取该电子表格（文件损坏、有密码保护或不是工作簿）",
    )


def _is_workbook_zip(f: IO[bytes]) -> bool:
    """Whether a zip holds an Excel (XLSX/XLSM/XLSB) or OpenDocument spreadsheet."""
    try:
        with zipfile.ZipFile(f) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    finally:
        f.seek(0)
    return bool(names & {"xl/workbook.xml", "xl/workbook.bin", "content.xml"})


def _text_encoding(f: IO[bytes], head: bytes, override: str | None) -> str:
    if override:
        try:
            name = codecs.lookup(override).name
        except LookupError:
            raise import_error(
                "import_unknown_encoding", f"Unknown encoding {override!r}", f"未知编码 {override!r}"
            ) from None
        _check_decodes(f, name)
        return name
    if head.startswith(codecs.BOM_UTF8):
        _check_decodes(f, "utf-8-sig")
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        _check_decodes(f, "utf-16")  # Excel's "Unicode text" export: UTF-16 with BOM, tab-separated
        return "utf-16"
    if b"\x00" in head:
        raise _binary()
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    if controls > len(head) // 20:
        raise _binary()
    if _decodes(f, "utf-8"):
        return "utf-8"
    sample = _non_ascii_window(f)
    matches = charset_normalizer.from_bytes(sample)
    # UTF-16/32 without a BOM would put NULs in ASCII text (refused above): never a guess here.
    names = [m.encoding for m in matches if not m.encoding.startswith(("utf_16", "utf_32"))]
    if any(n in _GB_FAMILY for n in names):
        chosen = "gb18030"
    elif names:
        chosen = names[0]
    else:
        raise _undecodable()
    if chosen != "gb18030" and _decodes(f, "gb18030"):
        chosen = "gb18030"  # the market's legacy encoding wins a tie (cp949/big5 often decode GBK bytes too)
    _check_decodes(f, chosen)
    return chosen


def _undecodable() -> ValidationFailed:
    return import_error(
        "import_undecodable",
        "The file's text encoding cannot be recognised; save it as UTF-8 (or GBK) and try again",
        "无法识别文件的文字编码，请另存为 UTF-8（或 GBK）后重试",
    )


def _decodes(f: IO[bytes], encoding: str) -> bool:
    """Whether the whole file decodes strictly (incrementally, a megabyte at a time)."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    f.seek(0)
    try:
        while chunk := f.read(READ_CHUNK):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    finally:
        f.seek(0)
    return True


def _check_decodes(f: IO[bytes], encoding: str) -> None:
    if not _decodes(f, encoding):
        raise _undecodable()


def _non_ascii_window(f: IO[bytes]) -> bytes:
    """About 64 KiB around the first non-ASCII byte (a GBK header after pages of ASCII codes still counts)."""
    f.seek(0)
    offset = 0
    try:
        while chunk := f.read(READ_CHUNK):
            m = re.search(rb"[\x80-\xff]", chunk)
            if m:
                start = max(offset + m.start() - 1024, 0)
                f.seek(start)
                return f.read(HEAD_BYTES)
            offset += len(chunk)
        f.seek(0)
        return f.read(HEAD_BYTES)
    finally:
        f.seek(0)


def _sample_lines(head: bytes, encoding: str) -> list[str]:
    text = codecs.getincrementaldecoder(encoding)("replace").decode(head)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(head) == HEAD_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    return lines[:SAMPLE_LINES]


_DELIMITERS = ("\t", ",", "----", "，", ";", "|")


def _delimiter(head: bytes, encoding: str, ext: str) -> str | None:
    """The delimiter most sample lines share; ``" "`` means runs of whitespace; ``None`` one value a line."""
    lines = _sample_lines(head, encoding)
    if not lines:
        raise _empty()
    body = lines[1:] if len(lines) > 2 else lines  # the header may differ
    need = max(1, (len(body) * 8 + 9) // 10)
    preferred = ("\t", *_DELIMITERS) if ext == "tsv" else _DELIMITERS
    for d in preferred:
        if sum(1 for ln in body if d in ln) >= need:
            return d
    if sum(1 for ln in body if len(ln.split()) > 1) >= need:
        return " "
    return None


# --------------------------------------------------------------------------------------------- row streams


def _text_lines(f: IO[bytes], encoding: str) -> Iterator[str]:
    f.seek(0)
    wrapper = io.TextIOWrapper(f, encoding=encoding, errors="strict", newline="")
    try:
        yield from wrapper
    except UnicodeDecodeError:
        raise _undecodable() from None
    finally:
        with contextlib.suppress(ValueError):  # the file may already be closed when an abandoned stream is collected
            wrapper.detach()


def _text_rows(f: IO[bytes], encoding: str, delimiter: str | None) -> Iterator[tuple[int, list[Any]]]:
    lines = _text_lines(f, encoding)
    if delimiter in ("\t", ",", ";", "|"):
        reader = csv.reader(lines, delimiter=delimiter)
        start = 1
        try:
            for cells in reader:
                yield start, cells
                start = reader.line_num + 1
        except csv.Error:
            raise import_error(
                "import_malformed_csv",
                f"The CSV is malformed near line {reader.line_num} (an unclosed quote or a stray NUL)",
                f"CSV 格式错误，位于第 {reader.line_num} 行附近（引号未闭合或含有 NUL 字符）",
                line=reader.line_num,
            ) from None
        return
    for n, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if delimiter is None:
            yield n, [line]
        elif delimiter == " ":
            yield n, line.split()
        else:
            yield n, line.split(delimiter)


def _sheet_rows(f: IO[bytes]) -> Iterator[tuple[int, list[Any]]]:
    from python_calamine import CalamineWorkbook

    f.seek(0)
    workbook = CalamineWorkbook.from_filelike(f)
    try:
        if not workbook.sheet_names:
            return
        sheet = workbook.get_sheet_by_index(0)
        first = (sheet.start or (0, 0))[0] + 1
        for i, cells in enumerate(sheet.iter_rows()):
            yield first + i, cells
    finally:
        workbook.close()


# --------------------------------------------------------------------------------------------- columns


def _norm(header: Any) -> str:
    text = str(header).strip().lower()
    text = re.sub(r"[(（\[【].*?[)）\]】]", "", text)
    return re.sub(r"[\s_\-.:：*#/\\'\"]+", "", text)


NUMBER_ALIASES = frozenset(
    {
        "卡号", "卡号码", "卡券号", "卡券号码", "券号", "券码", "卡券码", "串码", "兑换码", "激活码", "充值码",
        "序列号", "礼品卡号", "会员卡号", "优惠码", "优惠券码", "卡號", "卡號碼", "券號", "兌換碼", "cardnumber", "cardno", "cardnum", "card",
        "number", "code", "codes", "couponcode", "vouchercode", "voucher", "serial", "serialnumber",
        "serialno", "sn", "cdkey", "key", "giftcardnumber", "giftcard", "codenumber", "redeemcode",
    }
)  # fmt: skip
PIN_ALIASES = frozenset(
    {
        "卡密", "密码", "卡密码", "卡片密码", "密钥", "密碼", "卡密碼", "pin", "pincode", "password", "pwd", "pass", "secret",
        "cardpassword", "cardpin", "cardsecret", "passcode",
    }
)  # fmt: skip
EXPIRY_ALIASES = frozenset(
    {
        "有效期", "有效期至", "有效日期", "有效截止", "有效截止日期", "有效截止时间", "截止日期", "截止时间",
        "过期时间", "过期日期", "到期时间", "到期日", "到期日期", "失效时间", "失效日期", "有效期截止",
        "過期時間", "到期時間", "有效日期至",
        "expiry", "expires", "expirydate", "expiration", "expirationdate", "expiresat", "expireat",
        "expire", "exp", "validuntil", "validto", "validthru", "enddate", "expiredate", "expirytime",
    }
)  # fmt: skip
_ALIASES = {"number": NUMBER_ALIASES, "pin": PIN_ALIASES, "expires_at": EXPIRY_ALIASES}
_DATE_LIKE = re.compile(r"^\s*\d{4}\s*[-/.年]\s*\d{1,2}\s*[-/.月]\s*\d{1,2}|^\s*(19|20)\d{6}\s*$")


def _auto_header(cells: list[Any]) -> dict[str, int]:
    """Fields found in a header row by alias (卡密 alone is the code itself, not a PIN)."""
    found: dict[str, int] = {}
    for i, cell in enumerate(cells):
        key = _norm(cell)
        for name, aliases in _ALIASES.items():
            if key in aliases and name not in found:
                found[name] = i
    if "number" not in found and "pin" in found and _norm(cells[found["pin"]]) in ("卡密", "key", "code"):
        found["number"] = found.pop("pin")
    return found


def _looks_like_date(value: Any) -> bool:
    import datetime as dt

    if isinstance(value, dt.date):
        return True
    return isinstance(value, str) and bool(_DATE_LIKE.match(value))


def _resolve(first: list[Any], mapping: ColumnMapping | None) -> Columns:
    mapping = mapping or ColumnMapping()
    auto = _auto_header(first)
    named = any(isinstance(getattr(mapping, n), str) for n in FIELDS)
    has_header = mapping.header if mapping.header is not None else bool(auto) or named
    header = [str(c).strip() for c in first] if has_header else []
    chosen: dict[str, int | None] = {}
    for name in FIELDS:
        want = getattr(mapping, name)
        if want is None:
            chosen[name] = None
            continue
        if isinstance(want, int):
            if want < 0:
                raise _bad_mapping(name, str(want), header)
            chosen[name] = want
            continue
        if not has_header:
            raise _bad_mapping(name, want, header)
        idx = next((i for i, h in enumerate(header) if h == want.strip()), None)
        if idx is None:
            idx = next((i for i, h in enumerate(header) if _norm(h) == _norm(want)), None)
        if idx is None:
            raise _bad_mapping(name, want, header)
        chosen[name] = idx
    explicit = any(v is not None for v in chosen.values())
    if has_header and not explicit:
        chosen = {name: auto.get(name) for name in FIELDS}
    elif not has_header and not explicit:
        chosen = {"number": 0, "pin": None, "expires_at": None}
        for i, cell in enumerate(first[1:], start=1):
            if chosen["expires_at"] is None and _looks_like_date(cell):
                chosen["expires_at"] = i
            elif chosen["pin"] is None and not _looks_like_date(cell):
                chosen["pin"] = i
    if chosen["number"] is None:
        raise import_error(
            "import_no_number_column",
            "No column holds the card number; name it 卡号/card number or give a column mapping",
            "找不到卡号列，请将表头命名为“卡号”（或 card number），或指定列映射",
            columns=header,
        )
    used = [v for v in chosen.values() if v is not None]
    if len(used) != len(set(used)):
        raise import_error(
            "import_mapping_conflict",
            "Two fields are mapped to the same column",
            "列映射中有两个字段指向同一列",
            columns=header,
        )
    return Columns(chosen["number"], chosen["pin"], chosen["expires_at"], has_header, header)


def _bad_mapping(field_name: str, value: str, header: list[str]) -> ValidationFailed:
    return import_error(
        "import_mapping_unknown_column",
        f"The mapping for {field_name} names a column that is not in the file: {value!r}",
        f"列映射 {field_name} 指定的列在文件中不存在：{value!r}",
        field=field_name,
        columns=header,
    )


def _blank(cells: list[Any]) -> bool:
    return all(c is None or (isinstance(c, str) and not c.strip()) for c in cells)


#: Rows looked at (after blank ones) for the header: title rows (a merged title cell, a note) may come first.
HEADER_SCAN_ROWS = 20
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3001-\u303f\uff01-\uff0f\uff1a-\uff20]")
_WORDS = re.compile(r"^[A-Za-z][a-z]+(?: [A-Za-z][a-z]*)+$")


def _textual(cell: Any) -> bool:
    """A cell that reads like words (a title, an unknown header), not like a code, PIN or date."""
    if not isinstance(cell, str) or _looks_like_date(cell):
        return False
    text = cell.strip()
    return bool(_CJK.search(text) or _WORDS.match(text))


def _counter(column: list[Any]) -> bool:
    """Whether a column's values read 1, 2, 3 … (a 序号 row-number column)."""
    values: list[int] = []
    for v in column:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, str) and v.strip().isascii() and v.strip().isdigit():
            v = int(v.strip())
        if not isinstance(v, int) or isinstance(v, bool):
            return False
        values.append(v)
    # starting at 0 or 1: sequential card numbers (10000001, 10000002 …) are codes, not row numbers
    return len(values) >= 3 and values[0] in (0, 1) and all(b == a + 1 for a, b in pairwise(values))


def _unrecognised(rows_scanned: int) -> ValidationFailed:
    return import_error(
        "import_columns_unrecognised",
        f"No header row naming the columns (卡号/card number, 卡密/PIN, 有效期/expiry) was found in the first "
        f"{rows_scanned} rows, and the columns cannot be told by position. Choose which column holds the card "
        "number (and the PIN, the expiry) — a column mapping — and upload again",
        f"前 {rows_scanned} 行中没有可识别的表头（卡号、卡密、有效期），也无法按位置判断各列含义。"
        "请指定卡号（以及卡密、有效期）所在的列（列映射）后重新上传",
        rows_scanned=rows_scanned,
    )


def _header_index(head: list[tuple[int, list[Any]]], mapping: ColumnMapping) -> int | None:
    """Index in ``head`` of the header row: the first whose cells name the mapped (or known) columns."""
    named = [getattr(mapping, n) for n in FIELDS if isinstance(getattr(mapping, n), str)]
    for i, (_n, cells) in enumerate(head):
        if named:
            keys = {str(c).strip() for c in cells} | {_norm(c) for c in cells}
            if all(w.strip() in keys or _norm(w) in keys for w in named):
                return i
        elif _auto_header(cells):
            return i
    return None


def records(upload: Upload, mapping: ColumnMapping | None = None) -> tuple[Columns, Iterator[Record]]:
    """Find the header row (below any title rows) and stream the data rows (blank rows skipped).

    The header is the first of the first :data:`HEADER_SCAN_ROWS` non-blank rows whose cells name the card
    number column (卡号, card number …) or the columns a mapping names; rows above it are titles and are
    skipped. A file without one is read by position only when its cells look like codes; a row of words
    (a title, unknown headers) or a 1, 2, 3 … first column (序号) refuses the file with
    ``import_columns_unrecognised``, asking for a column mapping — never a silent import by position.
    """
    mapping = mapping or ColumnMapping()
    rows = upload.rows()
    head: list[tuple[int, list[Any]]] = []
    for row in rows:
        if _blank(row[1]):
            continue
        head.append(row)
        if len(head) >= HEADER_SCAN_ROWS:
            break
    if not head:
        raise _empty()
    at = None if mapping.header is False else _header_index(head, mapping)
    if at is not None:
        columns = _resolve(head[at][1], msgspec.structs.replace(mapping, header=True))
        columns.header_row = head[at][0]
        return columns, _mapped(chain(head[at + 1 :], rows), columns)
    if any(isinstance(getattr(mapping, n), str) for n in FIELDS):
        named = next(getattr(mapping, n) for n in FIELDS if isinstance(getattr(mapping, n), str))
        raise _bad_mapping(next(n for n in FIELDS if getattr(mapping, n) == named), named, [])
    explicit = any(isinstance(getattr(mapping, n), int) for n in FIELDS)
    if mapping.header:
        if not explicit:
            raise _unrecognised(len(head))
        columns = _resolve(head[0][1], mapping)
        columns.header_row = head[0][0]
        return columns, _mapped(chain(head[1:], rows), columns)
    columns = _resolve(head[0][1], msgspec.structs.replace(mapping, header=False))
    if not explicit:
        used = [i for i in (columns.number, columns.pin) if i is not None]
        width = max(len(cells) for _n, cells in head)
        if any(_textual(cells[i]) for _n, cells in head for i in used if i < len(cells)) or (
            width > 1 and _counter([cells[columns.number] if columns.number < len(cells) else None for _n, cells in head])
        ):
            raise _unrecognised(len(head))
    return columns, _mapped(chain(head, rows), columns)


def _mapped(rows: Iterator[tuple[int, list[Any]]], columns: Columns) -> Iterator[Record]:
    ni, pi, ei = columns.number, columns.pin, columns.expires_at
    for n, cells in rows:
        if _blank(cells):
            continue
        width = len(cells)
        yield Record(
            n,
            cells[ni] if ni < width else "",
            cells[pi] if pi is not None and pi < width else None,
            cells[ei] if ei is not None and ei < width else None,
        )
