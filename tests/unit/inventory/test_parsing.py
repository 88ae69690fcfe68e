"""Import parsing and validation rules (no database): encodings, formats, headers, row problems, staging."""

from __future__ import annotations

import codecs
import datetime as dt
import io
import os
import uuid
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from core.crypto.envelope import TenantCipher
from core.errors import ValidationFailed
from core.inventory.importing.parsing import ColumnMapping, open_upload, records
from core.inventory.importing.staging import Stager, StagingCorrupt, iter_staged, staged_rows
from core.inventory.importing.validation import Validator, bad_character, masked_code, parse_expiry
from core.inventory.vault import MAX_CODE_LENGTH

SH = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def read(data: bytes, name: str = "codes.csv", mapping: ColumnMapping | None = None, **kw):
    upload = open_upload(io.BytesIO(data), name, max_bytes=kw.pop("max_bytes", 10**7), **kw)
    columns, recs = records(upload, mapping)
    return upload, columns, list(recs)


def error_code(data: bytes, name: str = "codes.csv", **kw) -> str:
    with pytest.raises(ValidationFailed) as info:
        read(data, name, **kw)
    return info.value.code


def xlsx(rows: list[list[object]]) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    for row in rows:
        ws.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def cipher() -> TenantCipher:
    return TenantCipher(uuid.uuid4(), os.urandom(32))


# ------------------------------------------------------------------------------------------ encodings


def test_gbk_csv_with_chinese_headers_is_read_as_gb18030():
    data = "卡号,卡密,有效期\r\n1000000001,PIN-A,2027-01-01\r\n1000000002,PIN-B,2027/2/3\r\n".encode("gbk")
    upload, cols, recs = read(data)
    assert upload.encoding == "gb18030" and upload.file_format == "csv"
    assert cols.describe() == {"number": "卡号", "pin": "卡密", "expires_at": "有效期"}
    assert [(r.row, r.number, r.pin, r.expires_at) for r in recs] == [
        (2, "1000000001", "PIN-A", "2027-01-01"),
        (3, "1000000002", "PIN-B", "2027/2/3"),
    ]


def test_gbk_detected_even_when_the_chinese_comes_after_pages_of_ascii():
    body = "".join(f"{i:016d},P{i}\n" for i in range(8000))
    data = ("number,pin\n" + body + "9999999999999999,备注中文\n").encode("gbk")
    upload, _cols, recs = read(data)
    assert upload.encoding == "gb18030" and len(recs) == 8001 and recs[-1].pin == "备注中文"


def test_utf8_bom_csv():
    upload, cols, recs = read(codecs.BOM_UTF8 + "卡号,密码\n1000000001,X1\n".encode())
    assert upload.encoding == "utf-8-sig" and cols.header == ["卡号", "密码"]
    assert recs[0].number == "1000000001" and recs[0].pin == "X1"


def test_utf16_tab_separated_export_from_excel():
    upload, cols, recs = read("Card Number\tPIN\r\nA1\tB1\r\n".encode("utf-16"), "codes.txt")
    assert upload.encoding == "utf-16" and upload.delimiter == "\t"
    assert cols.describe()["pin"] == "PIN" and recs[0][1:3] == ("A1", "B1")


def test_encoding_override_and_unknown_encoding():
    data = "卡號\n甲乙丙丁戊己庚辛\n".encode("big5")  # traditional Chinese: detection would say GB18030
    upload, cols, recs = read(data, "a.txt", encoding="big5")
    assert upload.encoding == "big5" and cols.header == ["卡號"] and recs[0].number == "甲乙丙丁戊己庚辛"
    assert error_code(b"x\n", "a.txt", encoding="no-such-codec") == "import_unknown_encoding"


# ------------------------------------------------------------------------------------------ text forms


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("AAAA1111----PIN1\nBBBB2222----PIN2\n", "----"),
        ("AAAA1111,PIN1\nBBBB2222,PIN2\n", ","),
        ("AAAA1111 PIN1\nBBBB2222   PIN2\n", " "),
        ("AAAA1111\tPIN1\nBBBB2222\tPIN2\n", "\t"),
        ("AAAA1111，PIN1\nBBBB2222，PIN2\n", "，"),
    ],
)
def test_txt_number_pin_forms(text: str, delimiter: str):
    for newline in ("\n", "\r\n"):
        upload, cols, recs = read(text.replace("\n", newline).encode(), "codes.txt")
        assert upload.delimiter == delimiter
        assert (cols.number, cols.pin) == (0, 1)
        assert [(r.number, r.pin) for r in recs] == [("AAAA1111", "PIN1"), ("BBBB2222", "PIN2")]


def test_txt_one_code_per_line_crlf_blank_lines_skipped():
    upload, cols, recs = read(b"AAAA1111\r\n\r\nBBBB2222\r\n  \r\nCCCC3333", "codes.txt")
    assert upload.delimiter is None and cols.pin is None
    assert [(r.row, r.number) for r in recs] == [(1, "AAAA1111"), (3, "BBBB2222"), (5, "CCCC3333")]


def test_pasted_text_has_no_filename():
    upload, _cols, recs = read(b"KQ1-AAAA\nKQ1-BBBB\n", "")
    assert upload.file_format == "paste" and [r.number for r in recs] == ["KQ1-AAAA", "KQ1-BBBB"]


def test_txt_header_with_dashes_and_headerless_date_column():
    _u, cols, recs = read("卡号----卡密\n1----2\n".encode(), "a.txt")
    assert cols.has_header and (recs[0].number, recs[0].pin) == ("1", "2")
    _u, cols, recs = read(b"ABCD1234,2027-05-01\nEFGH5678,2027-05-02\n", "a.csv")
    assert not cols.has_header and (cols.pin, cols.expires_at) == (None, 1)


def test_quoted_csv_fields():
    _u, _c, recs = read(b'number,pin\n"AB,CD","P""Q"\n')
    assert (recs[0].number, recs[0].pin) == ("AB,CD", 'P"Q')


# ------------------------------------------------------------------------------------------ headers


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (["卡号", "卡密", "过期时间"], (0, 1, 2)),
        (["序号", "Card Number", "Password", "Expiry Date"], (1, 2, 3)),
        (["兑换码", "到期日（yyyy-mm-dd）"], (0, None, 1)),
        (["卡密"], (0, None, None)),  # 卡密 alone is the code itself
        (["card_no", "pin", "expires_at"], (0, 1, 2)),
    ],
)
def test_header_aliases(header: list[str], expected: tuple[int | None, ...]):
    _u, cols, _r = read((",".join(header) + "\n" + ",".join(["x"] * len(header)) + "\n").encode())
    assert (cols.number, cols.pin, cols.expires_at) == expected


def test_explicit_mapping_by_name_and_index():
    data = "序号,串号,口令\n1,AAAA1111,P1\n".encode()
    _u, cols, recs = read(data, mapping=ColumnMapping(number="串号", pin="口令"))
    assert (recs[0].number, recs[0].pin) == ("AAAA1111", "P1") and cols.describe()["number"] == "串号"
    _u, _c, recs = read(data, mapping=ColumnMapping(number=1, pin=2, header=True))
    assert (recs[0].row, recs[0].number) == (2, "AAAA1111")
    assert error_code(data, mapping=ColumnMapping(number="nope")) == "import_mapping_unknown_column"
    assert error_code(data, mapping=ColumnMapping(number=1, pin=1, header=True)) == "import_mapping_conflict"


def test_header_without_number_column():
    assert error_code("密码,有效期\nA,2027-01-01\n".encode()) == "import_no_number_column"


# ------------------------------------------------------------------------------------------ spreadsheets


def test_xlsx_first_sheet_with_dates_and_numbers():
    data = xlsx(
        [
            ["卡号", "卡密", "有效期"],
            [1234567890123, "PIN1", dt.date(2027, 1, 31)],
            ["X-0002", "PIN2", dt.datetime(2027, 2, 1, 12, 30)],
        ]
    )
    upload, cols, recs = read(data, "codes.xlsx")
    assert upload.file_format == "xlsx" and upload.kind == "sheet"
    assert cols.describe()["expires_at"] == "有效期"
    assert recs[0].number == 1234567890123.0 and recs[0].expires_at == dt.date(2027, 1, 31)
    assert recs[1].row == 3


def test_xlsx_renamed_csv_is_read_as_xlsx():
    upload, _c, recs = read(xlsx([["code"], ["AAAA1111"]]), "codes.csv")
    assert upload.kind == "sheet" and recs[0].number == "AAAA1111"


# ------------------------------------------------------------------------------------------ whole-file errors


def test_whole_file_errors():
    assert error_code(b"") == "import_empty"
    assert error_code(b"\r\n  \r\n") == "import_empty"
    assert error_code(codecs.BOM_UTF8) == "import_empty"
    assert error_code(b"\x89PNG\r\n\x1a\n" + os.urandom(200)) == "import_binary"
    assert error_code(bytes(range(256)) * 4) == "import_binary"
    assert error_code(b"PK\x03\x04" + os.urandom(100)) == "import_binary"
    assert error_code(b"abc", "scan.pdf") == "import_unknown_format"
    assert error_code(b"a,b\n" * 100, max_bytes=50) == "import_too_large"
    assert error_code(b"not a workbook at all", "codes.xlsx") == "import_bad_spreadsheet"
    assert error_code(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "codes.xls") == "import_bad_spreadsheet"
    assert error_code(b'number\n"unclosed\x00\n') in ("import_binary", "import_malformed_csv")


def test_undecodable_text():
    for data in (b"code\n" + bytes(range(128, 256)) * 3, b"code\n" + bytes([0x81, 0x30, 0x81]) * 3 + b"\xff\xfe\xfd\n"):
        assert error_code(data, "codes.txt") == "import_undecodable"
    assert error_code("卡号\n".encode("gbk") + b"\xff\xff\n", "codes.txt", encoding="gbk") == "import_undecodable"


# ------------------------------------------------------------------------------------------ cells and rows


def test_parse_expiry_forms():
    eod = dt.datetime(2026, 12, 31, 16, 0, tzinfo=dt.UTC)  # valid through 2026-12-31 in Shanghai: ends at its midnight
    for text in ("2026-12-31", "2026/12/31", "2026.12.31", "2026年12月31日", "20261231", " 2026-12-31 "):
        assert parse_expiry(text, SH) == eod, text
    assert parse_expiry("2026-12-31 08:30", SH) == dt.datetime(2026, 12, 31, 0, 30, tzinfo=dt.UTC)
    assert parse_expiry("2026-12-31T08:30:00Z", SH) == dt.datetime(2026, 12, 31, 8, 30, tzinfo=dt.UTC)
    assert parse_expiry("2026-12-31 08:30:00+08:00", SH) == dt.datetime(2026, 12, 31, 0, 30, tzinfo=dt.UTC)
    assert parse_expiry(dt.date(2026, 12, 31), SH) == eod
    assert parse_expiry(46387.0, SH) == eod  # Excel serial of 2026-12-31
    assert parse_expiry("", SH) is None and parse_expiry(None, SH) is None
    for bad in ("31/12/2026", "2026-13-01", "soon", "2026-02-30", True):
        with pytest.raises(ValueError):
            parse_expiry(bad, SH)


def test_bad_character_and_mask():
    assert bad_character("ABCD-1234") is None and bad_character("卡密ABC") is None
    assert bad_character("AB CD") == (3, " ")
    assert bad_character("AB\u200bCD") == (3, "\u200b")
    assert bad_character("AB\x07") == (3, "\x07")
    assert bad_character("AB\u3000CD") == (3, "\u3000")
    assert masked_code("1234567890") == "•••• 890" and masked_code("1234") == "••••••••"


def _validate(rows, code_format="number_pin", existing=frozenset(), batch_expires=None):
    from core.inventory.importing.parsing import Record

    c = cipher()
    v = Validator(c, code_format=code_format, tz=SH, now=NOW, batch_expires_at=batch_expires, sample_limit=50)
    cands = v.check_chunk([Record(i + 2, *r) for i, r in enumerate(rows)])
    from core.inventory.vault import digest_of

    held = {digest_of(c, n) for n in existing}
    kept = v.drop_existing(cands, {cand.digest: "B-1" for cand in cands if cand.digest in held})
    from core.inventory.importing.parsing import Columns

    return v.report(Columns(0, 1, 2, True, ["卡号", "卡密", "有效期"]), "csv", "utf-8", ","), kept


def test_every_kind_of_bad_row_is_reported_without_echoing_codes():
    secret_pin = "PIN-SECRET-77"
    rows = [
        ("GOOD00000001", "PIN1", "2027-01-01"),
        ("", "PIN2", None),  # empty
        ("BAD\u202eCHAR01", "PIN3", None),  # invisible control character (right-to-left override)
        ("BAD\x07CHAR002", "PIN4", None),  # control character
        ("L" * (MAX_CODE_LENGTH + 1), "PIN5", None),  # too long
        ("DATE00000001", "PIN6", "2027-02-30"),  # malformed date
        ("EXPIRED00001", "PIN7", "2026-01-01"),  # already expired
        ("GOOD00000001", "PIN8", None),  # duplicate inside the file
        ("HELD00000001", "PIN9", None),  # already in stock
        ("NOPIN0000001", None, None),  # PIN missing for number_pin
        ("EXCEL0000001", secret_pin + "\x00", None),  # bad PIN character
        (1.2345678901234567e19, "PIN10", None),  # Excel rounded the number
    ]
    report, kept = _validate(rows, existing={"HELD00000001"})
    assert [k.number for k in kept] == ["GOOD00000001"]
    assert report.total_rows == 12 and report.valid_rows == 1 and report.invalid_rows == 11
    assert report.problem_counts == {
        "bad_characters": 3,
        "bad_date": 1,
        "duplicate_existing": 1,
        "duplicate_in_file": 1,
        "empty": 1,
        "excel_precision": 1,
        "expired": 1,
        "pin_missing": 1,
        "too_long": 1,
    }
    by_row = {(p.row, p.code) for p in report.problems}
    assert {(3, "empty"), (4, "bad_characters"), (5, "bad_characters"), (6, "too_long"), (7, "bad_date"),
            (8, "expired"), (9, "duplicate_in_file"), (10, "duplicate_existing"), (11, "pin_missing"),
            (12, "bad_characters"), (13, "excel_precision")} == by_row
    assert [p.row for p in report.problems] == sorted(p.row for p in report.problems)
    for p in report.problems:
        assert p.message_en and p.message_zh
        for code, _pin, _e in rows:
            if isinstance(code, str) and len(code) > 4:
                assert code not in (p.value or "") and code not in p.message_en and code not in p.message_zh
        assert secret_pin not in p.message_en and secret_pin not in (p.value or "")
    dup = next(p for p in report.problems if p.code == "duplicate_in_file")
    assert dup.value == "•••• 0001"  # 12 characters: a third is 4
    expired = next(p for p in report.problems if p.code == "expired")
    assert expired.value == "2026-01-01" and "2026-01-01" in expired.message_zh and "01-02" not in expired.message_zh


def test_pin_rules_for_number_only_products_and_batch_expiry():
    report, kept = _validate([("AAAA00000001", "PIN1", None), ("AAAA00000002", None, None)], code_format="number")
    assert report.problem_counts == {"pin_unexpected": 1} and [k.number for k in kept] == ["AAAA00000002"]
    report, kept = _validate([("AAAA00000003", "PIN0", None)], batch_expires=NOW - dt.timedelta(days=1))
    assert report.problem_counts == {"expired": 1}
    soon = NOW + dt.timedelta(days=3)
    report, kept = _validate([("AAAA00000004", "PIN0", None)], batch_expires=soon)
    assert report.valid_rows == 1 and report.warnings == {"near_expiry": 1} and report.earliest_expiry == soon


def test_problem_sample_keeps_the_first_rows_and_counts_all():
    report, _kept = _validate([("", "PIN0", None)] * 500)
    assert report.problem_counts == {"empty": 500} and report.invalid_rows == 500
    assert len(report.problems) == 50 and report.problems_truncated
    assert [p.row for p in report.problems] == list(range(2, 52))


# ------------------------------------------------------------------------------------------ staging


def test_staging_round_trip_and_binding_to_the_import():
    c, import_id = cipher(), uuid.uuid4()
    stager = Stager(c, import_id, chunk_rows=3)
    rows = [(f"N{i:08d}", f"P{i}" if i % 2 else None, 1_900_000_000 if i % 3 else None) for i in range(10)]
    stager.extend(rows)
    blob = stager.finish()
    assert staged_rows(blob) == 10
    assert b"N00000001" not in blob and b"P1" not in blob
    assert [r for chunk in iter_staged(c, import_id, blob) for r in chunk] == rows
    with pytest.raises(StagingCorrupt):
        list(iter_staged(c, uuid.uuid4(), blob))
    with pytest.raises(StagingCorrupt):
        list(iter_staged(c, import_id, blob[:-5]))
    assert list(iter_staged(c, import_id, Stager(c, import_id).finish())) == []


def test_fast_digest_equals_the_vault_digest():
    from core.inventory.importing.validation import digester
    from core.inventory.vault import digest_of

    c = cipher()
    fast = digester(c)
    for number in ("1234567890", " padded ", "卡密ABC", "x" * MAX_CODE_LENGTH):
        assert fast(number) == digest_of(c, number)


def test_a_duplicate_names_the_row_it_repeats_and_the_batch_holding_it():
    rows = [
        ("DUPL00000001", "PIN1", None),
        ("OTHER0000002", "PIN2", None),
        ("DUPL00000001", "PIN3", None),  # row 4 repeats row 2
        ("HELD00000003", "PIN4", None),  # already in stock (batch B-1)
        (1234567890123456789.0, "PIN5", None),  # a number Excel rounded: shown as Excel kept it
    ]
    report, kept = _validate(rows, existing={"HELD00000003"})
    by_row = {p.row: p for p in report.problems}
    assert by_row[4].code == "duplicate_in_file" and by_row[4].message_zh == "与第 2 行重复（卡号相同）"
    assert by_row[4].message_en == "Repeats row 2: the same card number" and by_row[4].value == "•••• 0001"
    assert by_row[5].code == "duplicate_existing" and by_row[5].message_zh == "已在库存中（批次 B-1）"
    assert by_row[6].code == "excel_precision" and by_row[6].value == "1.23456789012346e+18"
    assert "PIN3" not in str(report) and "DUPL00000001" not in str(report)
    assert [c.row for c in kept] == [2, 3]
