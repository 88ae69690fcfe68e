"""Checking every row before anything is stored, and the report the user confirms.

Cells are normalised first (:func:`core.normalize.display`: NFKC, spaces and zero-width characters
removed). Per row: empty number, bad characters (control characters), the product's code rules (length and
charset of the number and the PIN, :mod:`core.catalog.rules`), malformed or past expiry, a PIN missing for a
``number_pin`` product or given for a number-only one, a number Excel has already rounded, a duplicate
earlier in the file, and (checked by the caller against ``codes.digest`` in chunks) a duplicate of a code
the tenant already holds. The report carries totals, counts per problem and the first problem rows with
zh-CN and English messages and the value as written (dates as the user wrote them); a code is never
echoed back, at most masked (``•••• 1234``), a PIN not at all.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

import msgspec

from core import expiry
from core.catalog.rules import CodeRules, PartRule
from core.crypto.envelope import TenantCipher
from core.inventory.importing.parsing import Columns, Record
from core.inventory.vault import MAX_CODE_LENGTH, digest_of, masked_code
from core.normalize import display, typed

#: How many problem rows the report lists (all are counted).
PROBLEM_SAMPLE = 200
_DATE_RE = re.compile(
    r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:(?:\s+|T)(\d{1,2})\s*[:：时]\s*(\d{1,2})(?:\s*[:：分]\s*(\d{1,2})(?:\.(\d{1,6}))?\s*秒?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)
_COMPACT_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_EXCEL_EPOCH = dt.datetime(1899, 12, 30)

COLUMN_NAMES = {"number": ("card number", "卡号"), "pin": ("PIN", "卡密"), "expires_at": ("expiry", "有效期")}
PROBLEMS: dict[str, tuple[str, str]] = {
    "empty": ("The card number is empty", "卡号为空"),
    "bad_characters": ("The {col_en} contains {what_en} at position {pos}", "{col_zh}第 {pos} 位含有{what_zh}"),
    "too_long": ("The {col_en} has {length} characters; at most {limit}", "{col_zh}长度为 {length}，最多 {limit} 个字符"),
    "too_short": ("The {col_en} has {length} characters; at least {limit}", "{col_zh}长度为 {length}，至少 {limit} 个字符"),
    "bad_charset": ("The {col_en} may hold only {charset_en}", "{col_zh}只能包含{charset_zh}"),
    "excel_precision": (
        "Excel kept only 15 digits of this number; format the column as text and export again",
        "Excel 只保留了该数字的前 15 位，请将该列设为文本格式后重新导出",
    ),
    "bad_date": ("The expiry “{value}” is not a date (use YYYY-MM-DD)", "有效期“{value}”不是有效日期（请使用 YYYY-MM-DD）"),
    "expired": ("The code expired on {value}", "该卡密已于 {value} 过期"),
    "duplicate_in_file": ("Repeats row {first}: the same card number", "与第 {first} 行重复（卡号相同）"),
    "duplicate_existing": ("Already in your stock (batch {batch})", "已在库存中（批次 {batch}）"),
    "pin_missing": ("This product needs a PIN (卡密) with every card number", "该商品为一码一密，缺少卡密"),
    "pin_unexpected": ("This product has card numbers only, but a PIN was given", "该商品只有卡号，不应提供卡密"),
}


class RowProblem(msgspec.Struct, omit_defaults=True):
    """One problem of one row; ``value`` is masked for codes, never the code itself."""

    row: int
    column: str
    code: str
    message_en: str
    message_zh: str
    value: str | None = None


class ImportReport(msgspec.Struct, kw_only=True):
    """What the validation found; stored on the import and returned by the API."""

    total_rows: int
    valid_rows: int
    invalid_rows: int
    problem_counts: dict[str, int]
    problems: list[RowProblem]
    problems_truncated: bool
    warnings: dict[str, int]
    columns: dict[str, str | None]
    has_header: bool
    file_format: str
    encoding: str | None
    delimiter: str | None
    earliest_expiry: dt.datetime | None = None
    latest_expiry: dt.datetime | None = None
    header_row: int | None = None


class Candidate(NamedTuple):
    """A row that passed the row-local checks: plaintext, in memory only until sealed."""

    row: int
    number: str
    pin: str | None
    expires_ts: int | None
    digest: str
    #: The digest the row's text had before codes were normalised (kept until then), when it differs.
    legacy_digest: str | None = None


def end_of_day(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    """An expiry given as a date means "valid through that day" in the tenant's timezone: stored as the
    start of the next local day (:func:`core.expiry.end_of_day`) and shown as that day
    (:func:`core.expiry.expiry_text`), never as the next day's midnight."""
    return expiry.end_of_day(day, tz)


def as_written(value: Any) -> str:
    """A cell as the user wrote it, for messages: text as is; a spreadsheet date as ``YYYY-MM-DD``."""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M") if value.time() != dt.time() else value.strftime("%Y-%m-%d")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()[:40]


def parse_expiry(value: Any, tz: ZoneInfo) -> dt.datetime | None:
    """Parse an expiry cell (text in common Chinese/ISO forms, a spreadsheet date, or an Excel serial).

    Dates without a time are the end of that day in ``tz``; times without an offset are in ``tz``.
    Returns ``None`` for an empty cell; raises :class:`ValueError` for anything else unreadable.
    """
    try:
        return _parse_expiry(value, tz)
    except OverflowError:  # a time at the calendar's ends (0001-01-01 00:00 east of UTC) has no UTC instant
        raise ValueError("date out of range") from None


def _parse_expiry(value: Any, tz: ZoneInfo) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return (value.replace(tzinfo=tz) if value.tzinfo is None else value).astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return end_of_day(value, tz)
    if isinstance(value, bool):
        raise ValueError("not a date")
    if isinstance(value, int | float):
        if not 1 <= value < 2_958_466:
            raise ValueError("not an Excel date")
        moment = _EXCEL_EPOCH + dt.timedelta(days=float(value))
        if float(value).is_integer():
            return end_of_day(moment.date(), tz)
        return moment.replace(tzinfo=tz).astimezone(dt.UTC)
    text = str(value).strip()
    if not text:
        return None
    m = _DATE_RE.match(text)
    if m:
        y, mo, d, hh, mm, ss, frac, off = m.groups()
        day = dt.date(int(y), int(mo), int(d))
        if hh is None:
            return end_of_day(day, tz)
        zone: dt.tzinfo = tz
        if off:
            zone = dt.UTC if off == "Z" else (  # type: ignore[assignment]  # strptime's %z always sets a tzinfo
                dt.datetime.strptime(off.replace(":", ""), "%z").tzinfo
            )
        micro = int((frac or "0").ljust(6, "0"))
        moment = dt.datetime(day.year, day.month, day.day, int(hh), int(mm), int(ss or 0), micro, tzinfo=zone)
        return moment.astimezone(dt.UTC)
    m = _COMPACT_RE.match(text)
    if m:
        return end_of_day(dt.date(int(m[1]), int(m[2]), int(m[3])), tz)
    raise ValueError("not a date")


def _describe(ch: str) -> tuple[str, str]:
    if ch == " ":
        return "a space", "空格"
    if ch == "\t":
        return "a tab", "制表符"
    if ch == "\u3000":
        return "a full-width space (U+3000)", "全角空格（U+3000）"
    if ch.isspace():
        return f"a space character (U+{ord(ch):04X})", f"空白字符（U+{ord(ch):04X}）"
    return f"an invisible or control character (U+{ord(ch):04X})", f"不可见或控制字符（U+{ord(ch):04X}）"


def bad_character(text: str) -> tuple[int, str] | None:
    """``(1-based position, character)`` of the first control/invisible/space character, else ``None``."""
    if text.isprintable() and " " not in text and (text.isascii() or not any(c.isspace() for c in text)):
        return None
    for i, ch in enumerate(text, start=1):
        if not ch.isprintable() or ch.isspace():
            return i, ch
    return None


def digester(cipher: TenantCipher) -> Callable[[str], str]:
    """``number → digest`` equal to :func:`~core.inventory.vault.digest_of`, through the one-shot C HMAC.

    The lookup digest is computed for every row of an upload; ``hmac.digest`` avoids the per-call
    ``hmac.HMAC`` object. Falls back to the cipher's own method if its key is not reachable.
    """
    key = getattr(cipher, "_digest_key", None)
    if not isinstance(key, bytes):
        return lambda number: digest_of(cipher, number)
    one_shot = hmac.digest

    def digest(number: str) -> str:
        return one_shot(key, typed(number).encode("utf-8"), "sha256").hex()

    return digest


class Validator:
    """Checks rows chunk by chunk and accumulates the report (counts, first problems, expiry range)."""

    def __init__(
        self,
        cipher: TenantCipher,
        *,
        code_format: str,
        tz: ZoneInfo,
        now: dt.datetime,
        rules: CodeRules | None = None,
        batch_expires_at: dt.datetime | None = None,
        batch_expires_written: str | None = None,
        near_expiry_days: int = 30,
        sample_limit: int = PROBLEM_SAMPLE,
    ) -> None:
        self.cipher = cipher
        self._digest = digester(cipher)
        self.needs_pin = code_format == "number_pin"
        self.rules = rules or CodeRules()
        self.batch_expires_written = batch_expires_written
        self.tz = tz
        self.now = now
        self.batch_expires_at = batch_expires_at
        self.near = now + dt.timedelta(days=near_expiry_days)
        self.sample_limit = sample_limit
        self.total = 0
        self.invalid = 0
        self.counts: dict[str, int] = {}
        self.warnings: dict[str, int] = {}
        self.sample: list[RowProblem] = []
        self.truncated = False
        self.earliest: dt.datetime | None = None
        self.latest: dt.datetime | None = None
        self._seen: dict[int, int] = {}  # digest prefix → the first row holding it (to name it in a duplicate)
        self._dates: dict[str, dt.datetime | ValueError | None] = {}
        self._pending: list[RowProblem] = []
        self._pending_rows: set[int] = set()

    # -- problems

    def _problem(self, row: int, column: str, code: str, value: str | None = None, **params: Any) -> None:
        en, zh = PROBLEMS[code]
        col_en, col_zh = COLUMN_NAMES[column]
        fmt = {"col_en": col_en, "col_zh": col_zh, "value": value, **params}
        self.counts[code] = self.counts.get(code, 0) + 1
        self._pending_rows.add(row)
        if len(self.sample) >= self.sample_limit:
            self.truncated = True
            return
        self._pending.append(RowProblem(row, column, code, en.format(**fmt), zh.format(**fmt), value))
        if len(self._pending) >= self.sample_limit * 2:  # keep memory bounded, and the lowest rows
            self._pending.sort(key=lambda p: p.row)
            del self._pending[self.sample_limit - len(self.sample):]
            self.truncated = True

    def _flush(self) -> None:
        """Move this chunk's problems into the sample, in row order, keeping the first ``sample_limit``."""
        self.invalid += len(self._pending_rows)
        self._pending_rows.clear()
        if self._pending:
            self._pending.sort(key=lambda p: p.row)
            room = self.sample_limit - len(self.sample)
            self.sample.extend(self._pending[:room])
            if len(self._pending) > room:
                self.truncated = True
            self._pending.clear()

    # -- cells

    def _date(self, raw: Any) -> dt.datetime | None:
        if isinstance(raw, str):
            key = raw.strip()
            hit: dt.datetime | ValueError | Literal[False] | None = self._dates.get(key, False)
            if hit is False:
                try:
                    hit = parse_expiry(key, self.tz)
                except ValueError as exc:
                    hit = exc
                if len(self._dates) < 10_000:
                    self._dates[key] = hit
            if isinstance(hit, ValueError):
                raise hit
            return hit
        return parse_expiry(raw, self.tz)

    def _text(self, row: int, column: str, raw: Any) -> str | None:
        """The cell as text (``""`` if empty; NFKC, spaces and invisible characters removed), or ``None``
        after recording a problem."""
        if raw is None:
            return ""
        if isinstance(raw, str):
            return display(raw)
        if isinstance(raw, float):
            if raw.is_integer() and abs(raw) < 1e15:
                return str(int(raw))
            if raw.is_integer():  # what Excel kept (already rounded: no longer the code, safe to show)
                self._problem(row, column, "excel_precision", f"{raw:.15g}" if column == "number" else None)
                return None
            return repr(raw)
        if isinstance(raw, bool | dt.date | dt.time | dt.timedelta):
            shown = as_written(raw) if column == "number" else None
            self._problem(row, column, "bad_characters", shown, pos=1, what_en="a non-text value", what_zh="非文本值")
            return None
        return display(raw)

    def _code_ok(self, row: int, column: str, text: str) -> bool:
        """Control characters, then the product's length and charset rules (on the canonical form)."""
        value = masked_code(text) if column == "number" else None  # a PIN is never shown, not even masked
        key = typed(text)
        if len(key) > MAX_CODE_LENGTH:
            self._problem(row, column, "too_long", value, length=len(key), limit=MAX_CODE_LENGTH)
            return False
        bad = bad_character(text)
        if bad is not None:
            what_en, what_zh = _describe(bad[1])
            self._problem(row, column, "bad_characters", value, pos=bad[0], what_en=what_en, what_zh=what_zh)
            return False
        rule: PartRule = self.rules.number if column == "number" else self.rules.pin
        broken = rule.problem(key)
        if broken is not None:
            self._problem(row, column, broken[0], value, **broken[1])
            return False
        return True

    # -- rows

    def check_chunk(self, records: Iterable[Record]) -> list[Candidate]:
        """Row-local checks and in-file duplicates for a chunk; returns the rows still valid."""
        out: list[Candidate] = []
        for rec in records:
            self.total += 1
            row = rec.row
            ok = True
            number = self._text(row, "number", rec.number)
            if number is None:
                ok = False
            elif not number:
                self._problem(row, "number", "empty")
                ok = False
            elif not self._code_ok(row, "number", number):
                ok = False
                number = None
            pin = self._text(row, "pin", rec.pin)
            if pin is None:
                ok = False
            elif pin:
                if not self.needs_pin:
                    self._problem(row, "pin", "pin_unexpected")
                    ok = False
                elif not self._code_ok(row, "pin", pin):
                    ok = False
            elif self.needs_pin:
                self._problem(row, "pin", "pin_missing")
                ok = False
            expires = self.batch_expires_at
            raw_exp = rec.expires_at
            row_exp: dt.datetime | None = None
            if raw_exp is not None and raw_exp != "":
                try:
                    row_exp = self._date(raw_exp)
                except ValueError:
                    self._problem(row, "expires_at", "bad_date", as_written(raw_exp))
                    ok = False
                if row_exp is not None:
                    expires = row_exp
            if expires is not None and expires <= self.now:
                # the date as the user wrote it (the row's cell, or the batch's expiry field)
                if row_exp is not None:
                    shown = as_written(raw_exp)
                else:
                    shown = self.batch_expires_written or expiry.expiry_text(expires, self.tz) or ""
                self._problem(row, "expires_at", "expired", shown)
                ok = False
            digest = ""
            if number:
                digest = self._digest(number)
                key = int(digest[:24], 16)  # 96 bits: a set of ints stays small for a million rows
                first = self._seen.get(key)
                if first is not None:
                    self._problem(row, "number", "duplicate_in_file", masked_code(number), first=first)
                    ok = False
                else:
                    self._seen[key] = row
            if ok and number:
                legacy = rec.number.strip() if isinstance(rec.number, str) else None
                out.append(Candidate(row, number, pin or None, int(row_exp.timestamp()) if row_exp else None, digest,
                                     self.cipher.digest(legacy.encode("utf-8")) if legacy and legacy != typed(legacy)
                                     else None))
        return out

    def drop_existing(self, candidates: list[Candidate], existing: Mapping[str, str]) -> list[Candidate]:
        """Mark candidates whose digest (or pre-normalisation digest) the tenant already holds (``existing``:
        digest → the reference of the batch holding it, named in the message); returns the rest and closes
        the chunk."""
        kept: list[Candidate] = []
        for c in candidates:
            held = existing.get(c.digest) or (existing.get(c.legacy_digest) if c.legacy_digest else None)
            if held is not None:
                self._problem(c.row, "number", "duplicate_existing", masked_code(c.number), batch=held or "—")
            else:
                kept.append(c)
                exp = (
                    dt.datetime.fromtimestamp(c.expires_ts, dt.UTC)
                    if c.expires_ts is not None
                    else self.batch_expires_at
                )
                if exp is not None:
                    if self.earliest is None or exp < self.earliest:
                        self.earliest = exp
                    if self.latest is None or exp > self.latest:
                        self.latest = exp
                    if exp <= self.near:
                        self.warnings["near_expiry"] = self.warnings.get("near_expiry", 0) + 1
        self._flush()
        return kept

    def report(self, columns: Columns, file_format: str, encoding: str | None, delimiter: str | None) -> ImportReport:
        self._flush()
        return ImportReport(
            total_rows=self.total,
            valid_rows=self.total - self.invalid,
            invalid_rows=self.invalid,
            problem_counts=dict(sorted(self.counts.items())),
            problems=self.sample,
            problems_truncated=self.truncated,
            warnings=self.warnings,
            columns=columns.describe(),
            has_header=columns.has_header,
            file_format=file_format,
            encoding=encoding,
            delimiter={"\t": "tab", " ": "whitespace"}.get(delimiter or "", delimiter),
            earliest_expiry=self.earliest,
            latest_expiry=self.latest,
            header_row=columns.header_row,
        )
