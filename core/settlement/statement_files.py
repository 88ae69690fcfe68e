"""Reading a channel's statement file (对账单) into statement lines: header detection, column mappings,
amounts and times.

The file is opened with :func:`core.inventory.importing.parsing.open_upload` (CSV/TXT in UTF-8 with or
without BOM, GBK/GB18030 …; XLSX/XLS/ODS). The header row is the first of the first
:data:`HEADER_SCAN_ROWS` non-blank rows naming the mapped columns (or, without a mapping, at least two known
headers: 订单号, 金额, 时间 …). Each data row becomes a :class:`ParsedLine` or a list of :class:`RowProblem`:

- amounts in yuan (``12.50``, ``¥1,234.50``, ``-3.2``, ``(3.20)``) or fen (``1250``) become integer fen
  exactly (``Decimal``; more than two decimals of a yuan is refused, never rounded);
- times without a zone are read in the tenant's zone and stored in UTC (``2026-11-03 14:05:09``,
  ``2026/11/3 14:05``, ``2026年11月3日 14:05``, ISO 8601 with an offset, a spreadsheet date cell);
- the kind comes from the kind column through the mapping's labels (``销售`` → ``sale``; known Chinese and
  English labels are understood without a mapping); with no kind column a negative amount is a ``refund``,
  otherwise a ``sale``. ``refund`` and ``commission`` amounts are stored positive (the amount refunded,
  the amount the channel charges), whatever sign the channel prints;
- the line id comes from the line-id column, or — when the file has none (or the cell is empty) — is
  derived from the row's content (``h:`` + 32 hex of a SHA-256): the same row imported again gets the
  same id, so it is stored once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import re
import zoneinfo
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import IO, Any

import msgspec

from core.errors import ValidationFailed
from core.inventory.importing.parsing import Upload, import_error, open_upload
from core.settlement.models import LINE_KINDS

__all__ = [
    "FIELDS",
    "HEADER_SCAN_ROWS",
    "REQUIRED_FIELDS",
    "MappingSpec",
    "ParsedLine",
    "Preview",
    "RowProblem",
    "open_statement",
    "parse_amount",
    "parse_time",
    "preview",
    "read_lines",
    "suggest_columns",
]

#: The fields of a statement line a column can hold.
FIELDS = ("line_id", "order_id", "order_line_id", "kind", "amount", "commission", "occurred_at", "description")
#: Fields every mapping must name a column for.
REQUIRED_FIELDS = ("order_id", "amount", "occurred_at")
HEADER_SCAN_ROWS = 20
PREVIEW_ROWS = 10
MAX_LINE_ID = 100
MAX_DESCRIPTION = 500


def _n(text: Any) -> str:
    """A header as compared: lower case, without spaces, punctuation and a unit in brackets (``金额(元)``)."""
    out = str(text if text is not None else "").strip().lower().lstrip("\ufeff")
    out = re.sub(r"[(（\[【].*?[)）\]】]", "", out)
    return re.sub(r"[\s_\-.:：*#/\\'\"]+", "", out)


#: Header names the channels use, per field (compared after :func:`_n`).
HEADER_ALIASES: dict[str, frozenset[str]] = {
    "line_id": frozenset({
        "流水号", "账单流水号", "交易流水号", "明细流水号", "资金流水号", "账务流水号", "账单号", "账单编号",
        "账单明细号", "明细号", "流水id", "账单id", "lineid", "billid", "flowid", "serialno", "transactionid",
    }),
    "order_id": frozenset({
        "订单号", "订单编号", "主订单号", "主订单编号", "平台订单号", "外部订单号", "交易订单号", "orderid",
        "orderno", "ordernumber", "order",
    }),
    "order_line_id": frozenset({
        "子订单号", "子订单编号", "子单号", "订单明细号", "订单行号", "商品单号", "券码订单号", "orderlineid",
        "lineno", "suborderid", "subordernumber", "itemid",
    }),
    "kind": frozenset({
        "交易类型", "类型", "业务类型", "账单类型", "收支类型", "款项类型", "费用类型", "流水类型", "kind", "type",
        "billtype",
    }),
    "amount": frozenset({
        "金额", "交易金额", "订单金额", "结算金额", "实收金额", "收入金额", "账单金额", "收支金额", "发生金额",
        "amount", "amountfen", "amountyuan",
    }),
    "commission": frozenset({
        "佣金", "平台佣金", "技术服务费", "平台服务费", "服务费", "手续费", "佣金金额", "commission", "fee",
        "commissionfen",
    }),
    "occurred_at": frozenset({
        "时间", "交易时间", "发生时间", "入账时间", "结算时间", "账单时间", "记账时间", "创建时间", "日期",
        "交易日期", "time", "date", "occurredat", "settletime",
    }),
    "description": frozenset({"备注", "说明", "摘要", "商品名称", "描述", "description", "remark", "note", "memo"}),
}  # fmt: skip

#: The kind labels understood without a mapping (compared after :func:`_n`).
KIND_LABELS: dict[str, str] = {
    **dict.fromkeys(("销售", "交易", "支付", "收入", "订单收入", "货款", "成交", "售出", "订单", "sale", "sales",
                     "order", "payment"), "sale"),
    **dict.fromkeys(("退款", "售后退款", "退货", "退货退款", "取消", "订单取消", "refund", "refunds", "cancel",
                     "cancellation"), "refund"),
    **dict.fromkeys(("佣金", "技术服务费", "平台服务费", "服务费", "手续费", "平台佣金", "commission", "fee"),
                    "commission"),
    **dict.fromkeys(("调整", "调账", "补贴", "赔付", "扣款", "罚款", "其他", "adjustment", "other"), "adjustment"),
}  # fmt: skip


class MappingSpec(msgspec.Struct, kw_only=True):
    """A column mapping: ``columns`` field → header; ``kinds`` their label → ours; ``amount_unit``."""

    columns: dict[str, str]
    kinds: dict[str, str] = msgspec.field(default_factory=dict)
    amount_unit: str = "yuan"


class ParsedLine(msgspec.Struct, frozen=True, kw_only=True):
    """One valid data row as a statement line (amounts in fen, time in UTC)."""

    row: int
    line_id: str
    order_id: str
    order_line_id: str
    kind: str
    amount_fen: int
    commission_fen: int
    occurred_at: dt.datetime
    description: str


class RowProblem(msgspec.Struct, frozen=True, kw_only=True):
    """What is wrong with one row: the row number in the file, the field, the value written, the problem."""

    row: int
    field: str
    value: str
    code: str
    message: str
    message_zh: str
    repeats_row: int | None = None


class Preview(msgspec.Struct, kw_only=True):
    """The header found, the first rows and the suggested mapping of a file (nothing stored)."""

    encoding: str
    file_format: str
    header_row: int
    headers: list[str]
    rows: list[list[str]]
    suggested: dict[str, str]


# ------------------------------------------------------------------------------------------ cell values


def cell_text(value: Any) -> str:
    """A cell as text: spreadsheet integers without ``.0``, Excel's ``="123"`` and leading ``'`` unwrapped."""
    if isinstance(value, str):
        text = value.strip()
        if not text or text[0] not in "='\t":
            return text
    elif value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    text = str(value).strip().strip("\t")
    if text.startswith('="') and text.endswith('"'):
        text = text[2:-1]
    return text.lstrip("'").strip()


_MONEY_NOISE = re.compile(r"[\s,，¥￥元]|RMB|CNY", re.IGNORECASE)
_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


def parse_amount(value: Any, unit: str) -> int:
    """An amount cell as integer fen; :class:`ValueError` (with a reason code) when it is not exact money."""
    if isinstance(value, bool):
        raise ValueError("not_a_number")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))  # the shortest text of the spreadsheet's number, as the cell shows it
    else:
        text = _MONEY_NOISE.sub("", str(value or "")).replace("−", "-").replace("－", "-")
        negative = text.startswith("(") and text.endswith(")")
        text = text[1:-1] if negative else text
        if not text:
            raise ValueError("empty")
        if not _DECIMAL.match(text):
            raise ValueError("not_a_number")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ValueError("not_a_number") from None
        number = -number if negative else number
    fen = number * 100 if unit == "yuan" else number
    if fen != fen.to_integral_value():
        raise ValueError("too_many_decimals")
    if abs(fen) >= 10**15:
        raise ValueError("too_large")
    return int(fen)


_CN_DATE = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日?")
_DATE_TIME = re.compile(
    r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_time(value: Any, zone: str) -> dt.datetime:
    """A time cell as an aware UTC datetime (a time without a zone is the tenant's); :class:`ValueError`."""
    tz = zoneinfo.ZoneInfo(zone)
    if isinstance(value, dt.datetime):
        at = value
    elif isinstance(value, dt.date):
        at = dt.datetime(value.year, value.month, value.day)
    else:
        text = _CN_DATE.sub(lambda m: f"{m.group(1)}-{m.group(2)}-{m.group(3)} ", cell_text(value)).strip()
        text = re.sub(r"\s+", " ", text)
        if not text:
            raise ValueError("empty")
        if len(text) == 19 and text[4] == "-" and text[10] == " ":  # the usual 2026-11-03 14:05:09: C speed
            with contextlib.suppress(ValueError):  # not a real date: the general reader below says why
                return dt.datetime.fromisoformat(text).replace(tzinfo=tz).astimezone(dt.UTC)
        if text.isdigit() and len(text) in (10, 13):  # epoch seconds or milliseconds
            seconds = int(text) / (1000 if len(text) == 13 else 1)
            return dt.datetime.fromtimestamp(seconds, dt.UTC)
        m = _DATE_TIME.match(text)
        if m is None:
            raise ValueError("not_a_time")
        y, mo, d, h, mi, s, frac, off = m.groups()
        try:
            at = dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0),
                             int((frac or "0").ljust(6, "0")))
        except ValueError:
            raise ValueError("not_a_time") from None
        if off:
            at = dt.datetime.fromisoformat(at.isoformat() + ("+00:00" if off == "Z" else off))
    if at.tzinfo is None:
        at = at.replace(tzinfo=tz)
    return at.astimezone(dt.UTC)


# ------------------------------------------------------------------------------------------ headers


def _undecodable() -> ValidationFailed:
    return import_error("import_undecodable",
                        "The file's text encoding cannot be recognised; save it as UTF-8 (or GBK) and try again",
                        "无法识别文件的文字编码，请另存为 UTF-8（或 GBK）后重试")


class _Borrowed(io.RawIOBase):
    """The caller's file, read through a wrapper that closing does not close: a row stream ended early
    (a preview reads 20 rows) closes its text wrapper, which would otherwise close the upload itself."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._f.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()


def open_statement(f: IO[bytes], filename: str, *, max_bytes: int, encoding: str | None = None) -> Upload:
    """Sniff the file (format, encoding, delimiter); whole-file problems raise ``ValidationFailed``.

    ``f`` stays open whatever happens to the returned upload's row streams."""
    f.seek(0)
    try:
        return open_upload(io.BufferedReader(_Borrowed(f)), filename, max_bytes=max_bytes, encoding=encoding)
    except ValidationFailed as exc:
        if exc.code != "import_undecodable" or encoding:
            raise
    # the detector found nothing it trusts (long repetitive text): the channels' legacy encoding, if it fits
    f.seek(0)
    try:
        return open_upload(io.BufferedReader(_Borrowed(f)), filename, max_bytes=max_bytes, encoding="gb18030")
    except ValidationFailed:
        raise _undecodable() from None


def _blank(cells: list[Any]) -> bool:
    return all(c is None or (isinstance(c, str) and not c.strip().strip("'\t")) for c in cells)


def suggest_columns(headers: list[str]) -> dict[str, str]:
    """Field → header for every header a channel is known to use for it (first match wins)."""
    found: dict[str, str] = {}
    for header in headers:
        key = _n(header)
        for name in FIELDS:
            if name not in found and key in HEADER_ALIASES[name]:
                found[name] = header
                break
    return found


def _header_matches(cells: list[Any], spec: MappingSpec | None) -> bool:
    names = {_n(c) for c in cells if cell_text(c)}
    if spec is not None:
        return all(_n(h) in names for h in spec.columns.values() if h)
    return len(suggest_columns([cell_text(c) for c in cells])) >= 2


def _head(upload: Upload, spec: MappingSpec | None) -> tuple[bool, int, list[str], Iterator[tuple[int, list[Any]]],
                                                              list[tuple[int, list[Any]]]]:
    """(header found?, its row number, its cells, the rows after the scanned ones, the scanned rows below it).

    Without a row naming the columns, the first non-blank row stands in as the header (not found)."""
    rows = upload.rows()
    head: list[tuple[int, list[Any]]] = []
    for n, cells in rows:
        if _blank(cells):
            continue
        head.append((n, cells))
        if len(head) >= HEADER_SCAN_ROWS:
            break
    if not head:
        raise import_error("import_empty", "The file is empty", "文件为空")
    for i, (n, cells) in enumerate(head):
        if _header_matches(cells, spec):
            return True, n, [cell_text(c) for c in cells], rows, head[i + 1:]
    return False, head[0][0], [cell_text(c) for c in head[0][1]], rows, head[1:]


def preview(upload: Upload, spec: MappingSpec | None = None) -> Preview:
    """The header row, the first :data:`PREVIEW_ROWS` rows below it and the suggested mapping.

    With no row naming known columns (or ``spec``'s), the first non-blank row is offered as the header and
    nothing is suggested."""
    found, header_row, headers, rest, after = _head(upload, spec)
    _close(rest)
    if not found and spec is not None:
        found, header_row, headers, rest, after = _head(upload, None)
        _close(rest)
    shown = [[cell_text(c) for c in cells] for _n, cells in after[:PREVIEW_ROWS]]
    return Preview(encoding=upload.encoding or "", file_format=upload.file_format, header_row=header_row,
                   headers=headers, rows=shown, suggested=suggest_columns(headers) if found else {})


def check_mapping(spec: MappingSpec) -> None:
    """Refuse a mapping without the required fields, with unknown fields, kinds or unit (422)."""
    bad = [f for f in spec.columns if f not in FIELDS]
    missing = [f for f in REQUIRED_FIELDS if not spec.columns.get(f)]
    wrong_kinds = sorted({v for v in spec.kinds.values() if v not in LINE_KINDS})
    used = [h for h in spec.columns.values() if h]
    if bad or missing or wrong_kinds or spec.amount_unit not in ("yuan", "fen") or len(used) != len({_n(h) for h in used}):
        raise ValidationFailed(
            "The column mapping must name a column for order_id, amount and occurred_at, each column at most "
            f"once, known fields ({', '.join(FIELDS)}), kinds among {', '.join(LINE_KINDS)} and amount_unit "
            "yuan or fen",
            "列映射必须为订单号（order_id）、金额（amount）和时间（occurred_at）指定列，每列只能用一次，"
            "类型只能是 sale/refund/commission/adjustment，金额单位为 yuan 或 fen",
            code="statement_mapping_invalid",
            extra={"unknown_fields": bad, "missing_fields": missing, "unknown_kinds": wrong_kinds},
        )


# ------------------------------------------------------------------------------------------ rows


_PROBLEMS: dict[str, tuple[str, str]] = {
    "empty": ("is empty", "为空"),
    "not_a_number": ("is not an amount", "不是金额"),
    "too_many_decimals": ("has more decimals than a fen", "小数位超过“分”"),
    "too_large": ("is too large", "数值过大"),
    "not_a_time": ("is not a date and time", "不是日期时间"),
    "unknown_kind": ("is not a known kind: map it to sale, refund, commission or adjustment",
                     "不是已知的类型，请映射为销售、退款、佣金或调整"),
    "too_long": ("is too long", "过长"),
    "repeated_same": ("repeats an earlier row of the file: stored once", "与前面某行完全相同：只保存一次"),
    "repeated_in_file": ("repeats the line id of an earlier row with other values",
                         "与前面某行的流水号相同但内容不同"),
}


_FIELD_ZH = {"line_id": "流水号", "order_id": "订单号", "order_line_id": "子订单号", "kind": "类型", "amount": "金额",
             "commission": "佣金", "occurred_at": "时间", "description": "备注"}


def _problem(row: int, field: str, value: Any, code: str, repeats: int | None = None) -> RowProblem:
    en, zh = _PROBLEMS[code]
    label = field.replace("_", " ")
    return RowProblem(row=row, field=field, value=cell_text(value)[:100], code=code,
                      message=f"Row {row}: {label} {en}" + (f" (row {repeats})" if repeats else ""),
                      message_zh=f"第 {row} 行：{_FIELD_ZH.get(field, field)}{zh}" + (f"（第 {repeats} 行）" if repeats else ""),
                      repeats_row=repeats)


def content_id(line: ParsedLine) -> str:
    """The id of a line without one: ``h:`` + 32 hex of the SHA-256 of its content (stable across imports)."""
    text = "\x1f".join((line.order_id, line.order_line_id, line.kind, str(line.amount_fen),
                        str(line.commission_fen), line.occurred_at.isoformat(), line.description))
    return "h:" + hashlib.sha256(text.encode()).hexdigest()[:32]


class _Kinds:
    """Kind labels → kinds: the mapping's labels first, then the known ones; each distinct text looked up once."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.exact = dict(labels)
        self.normal = {**KIND_LABELS, **{_n(label): kind for label, kind in labels.items()}}
        self.seen: dict[str, str | None] = {}

    def __call__(self, raw: Any, amount: int) -> str | None:
        text = cell_text(raw)
        if not text:
            return "refund" if amount < 0 else "sale"
        if text not in self.seen:
            self.seen[text] = self.exact.get(text) or self.normal.get(_n(text))
        return self.seen[text]


def _row(n: int, cells: list[Any], idx: dict[str, int], spec: MappingSpec, zone: str, kinds: _Kinds
         ) -> ParsedLine | list[RowProblem]:
    def cell(name: str) -> Any:
        i = idx.get(name)
        return cells[i] if i is not None and i < len(cells) else None

    problems: list[RowProblem] = []
    amount = commission = 0
    at = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    try:
        amount = parse_amount(cell("amount"), spec.amount_unit)
    except ValueError as exc:
        problems.append(_problem(n, "amount", cell("amount"), str(exc)))
    if "commission" in idx and cell_text(cell("commission")):
        try:
            commission = parse_amount(cell("commission"), spec.amount_unit)
        except ValueError as exc:
            problems.append(_problem(n, "commission", cell("commission"), str(exc)))
    try:
        at = parse_time(cell("occurred_at"), zone)
    except ValueError as exc:
        problems.append(_problem(n, "occurred_at", cell("occurred_at"), str(exc)))
    kind = kinds(cell("kind"), amount)
    if kind is None:
        problems.append(_problem(n, "kind", cell("kind"), "unknown_kind"))
    texts = {f: cell_text(cell(f)) for f in ("line_id", "order_id", "order_line_id")}
    for f, text in texts.items():
        if len(text) > MAX_LINE_ID:
            problems.append(_problem(n, f, text, "too_long"))
    if not texts["order_id"] and kind in ("sale", "refund"):
        problems.append(_problem(n, "order_id", "", "empty"))
    if problems or kind is None:
        return problems
    if kind in ("refund", "commission"):
        amount = abs(amount)
    line = ParsedLine(row=n, line_id=texts["line_id"], order_id=texts["order_id"],
                      order_line_id=texts["order_line_id"], kind=kind, amount_fen=amount,
                      commission_fen=abs(commission), occurred_at=at,
                      description=cell_text(cell("description"))[:MAX_DESCRIPTION])
    return line if line.line_id else msgspec.structs.replace(line, line_id=content_id(line))


def column_indexes(headers: list[str], spec: MappingSpec) -> dict[str, int]:
    """Field → column index of the header row; ``statement_mapping_unknown_column`` for a header not there."""
    keys = [_n(h) for h in headers]
    idx: dict[str, int] = {}
    for name, header in spec.columns.items():
        if not header:
            continue
        if _n(header) not in keys:
            raise ValidationFailed(
                f"The mapping names a column that is not in the file: {header!r} ({name})",
                f"列映射中的列在文件中不存在：{header!r}（{name}）",
                code="statement_mapping_unknown_column", extra={"field": name, "columns": headers},
            )
        idx[name] = keys.index(_n(header))
    return idx


class ReadResult(msgspec.Struct, kw_only=True):
    """The lines of a file, the rows with problems, identical repeats skipped (with the row they repeat)."""

    lines: list[ParsedLine]
    problems: list[RowProblem]
    repeats: list[RowProblem]
    header_row: int
    rows: int


def read_lines(upload: Upload, spec: MappingSpec, zone: str) -> ReadResult:
    """Every data row as a :class:`ParsedLine` or its problems; a line id seen before in the file is a
    repeat when the row says the same (skipped, reported) and a problem when it says something else."""
    check_mapping(spec)
    found, header_row, headers, rest, after = _head(upload, spec)
    if not found:
        _close(rest)
        missing = [h for h in spec.columns.values() if h and _n(h) not in {_n(c) for c in headers}]
        raise ValidationFailed(
            f"No header row naming the mapped columns was found in the first {HEADER_SCAN_ROWS} rows "
            f"(missing: {', '.join(missing)}); check the file or change the column mapping",
            f"前 {HEADER_SCAN_ROWS} 行中没有包含映射列的表头（缺少：{'、'.join(missing)}），请检查文件或修改列映射",
            code="statement_mapping_unknown_column", extra={"missing": missing, "columns": headers},
        )
    try:
        idx = column_indexes(headers, spec)
    except ValidationFailed:
        _close(rest)
        raise
    seen: dict[str, ParsedLine] = {}
    kinds = _Kinds(spec.kinds)
    out = ReadResult(lines=[], problems=[], repeats=[], header_row=header_row, rows=0)
    try:
        for n, cells in _chain(after, rest):
            if _blank(cells):
                continue
            out.rows += 1
            parsed = _row(n, cells, idx, spec, zone, kinds)
            if isinstance(parsed, list):
                out.problems.extend(parsed)
                continue
            first = seen.get(parsed.line_id)
            if first is None:
                seen[parsed.line_id] = parsed
                out.lines.append(parsed)
            elif msgspec.structs.replace(first, row=n) == parsed:
                out.repeats.append(_problem(n, "line_id", parsed.line_id, "repeated_same", first.row))
            else:
                out.problems.append(_problem(n, "line_id", parsed.line_id, "repeated_in_file", first.row))
    finally:
        _close(rest)
    return out


def _close(rows: Iterator[Any]) -> None:
    """End a row stream now (its text wrapper lets go of the file), not whenever it is collected."""
    close = getattr(rows, "close", None)
    if close is not None:
        close()


def _chain(*parts: Any) -> Iterator[tuple[int, list[Any]]]:
    for part in parts:
        yield from part
