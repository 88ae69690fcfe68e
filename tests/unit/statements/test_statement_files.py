"""Reading statement files: encodings (GBK with title rows, UTF-8 with BOM, XLSX), Chinese headers, amounts in
yuan or fen to exact fen, times in the tenant's zone to UTC, per-row problems and repeated line ids."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest

from core.errors import ValidationFailed
from core.inventory.importing.parsing import Upload
from core.settlement.statement_files import (
    MappingSpec,
    check_mapping,
    open_statement,
    parse_amount,
    parse_time,
    preview,
    read_lines,
    suggest_columns,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "statements"
SHANGHAI = "Asia/Shanghai"


def upload(name: str) -> Upload:
    data = (FIXTURES / name).read_bytes()
    return open_statement(io.BytesIO(data), name, max_bytes=1 << 20)


def auto(name: str) -> MappingSpec:
    p = preview(upload(name))
    return MappingSpec(columns=p.suggested)


@pytest.mark.parametrize(("value", "unit", "fen"), [
    ("12.50", "yuan", 1250), ("¥1,234.50", "yuan", 123450), ("￥ 1，234.5 元", "yuan", 123450), ("-3.2", "yuan", -320),
    ("(3.20)", "yuan", -320), ("−0.01", "yuan", -1), ("8", "yuan", 800), (".5", "yuan", 50), ("RMB 7.00", "yuan", 700),
    ("1250", "fen", 1250), ("1250.00", "fen", 1250), (88.8, "yuan", 8880), (0.1, "yuan", 10), (1999, "fen", 1999),
    (12, "yuan", 1200),
])
def test_amounts_become_exact_fen(value: object, unit: str, fen: int) -> None:
    assert parse_amount(value, unit) == fen


@pytest.mark.parametrize(("value", "unit", "reason"), [
    ("12.505", "yuan", "too_many_decimals"), ("12.5", "fen", "too_many_decimals"), ("abc", "yuan", "not_a_number"),
    ("", "yuan", "empty"), (None, "yuan", "empty"), ("1.2.3", "yuan", "not_a_number"), ("1e3", "yuan", "not_a_number"),
    (True, "yuan", "not_a_number"), ("99999999999999", "yuan", "too_large"), (0.125, "yuan", "too_many_decimals"),
])
def test_inexact_or_unreadable_amounts_are_refused(value: object, unit: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_amount(value, unit)


@pytest.mark.parametrize(("value", "utc"), [
    ("2026-11-03 14:05:09", dt.datetime(2026, 11, 3, 6, 5, 9, tzinfo=dt.UTC)),
    ("2026/11/3 14:05", dt.datetime(2026, 11, 3, 6, 5, tzinfo=dt.UTC)),
    ("2026年11月3日 14:05:09", dt.datetime(2026, 11, 3, 6, 5, 9, tzinfo=dt.UTC)),
    ("2026-12-01", dt.datetime(2026, 11, 30, 16, 0, tzinfo=dt.UTC)),
    ("2026-12-01T09:30:00+08:00", dt.datetime(2026, 12, 1, 1, 30, tzinfo=dt.UTC)),
    ("2026-12-01T09:30:00Z", dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)),
    ("1764547200", dt.datetime(2025, 12, 1, 0, 0, tzinfo=dt.UTC)),
    (dt.datetime(2026, 12, 1, 12, 0), dt.datetime(2026, 12, 1, 4, 0, tzinfo=dt.UTC)),
    (dt.date(2026, 12, 1), dt.datetime(2026, 11, 30, 16, 0, tzinfo=dt.UTC)),
])
def test_times_are_read_in_the_tenant_zone_and_stored_in_utc(value: object, utc: dt.datetime) -> None:
    assert parse_time(value, SHANGHAI) == utc


@pytest.mark.parametrize("value", ["", "yesterday", "2026-13-01 00:00", "2026-02-30", "12:00"])
def test_unreadable_times_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_time(value, SHANGHAI)


def test_known_chinese_headers_are_suggested() -> None:
    assert suggest_columns(["账单流水号", "订单号", "子订单号", "交易类型", "金额(元)", "佣金(元)", "入账时间", "备注"]) == {
        "line_id": "账单流水号", "order_id": "订单号", "order_line_id": "子订单号", "kind": "交易类型",
        "amount": "金额(元)", "commission": "佣金(元)", "occurred_at": "入账时间", "description": "备注",
    }


def test_gbk_file_with_title_rows_and_chinese_headers() -> None:
    up = upload("locallife_gbk.csv")
    assert up.encoding == "gb18030"
    p = preview(up)
    assert p.header_row == 4 and p.headers[0] == "账单流水号" and p.rows[0][:2] == ["LL0001", "DY1001"]
    result = read_lines(upload("locallife_gbk.csv"), MappingSpec(columns=p.suggested), SHANGHAI)
    assert result.problems == [] and result.rows == 4
    got = [(ln.row, ln.line_id, ln.order_id, ln.order_line_id, ln.kind, ln.amount_fen, ln.commission_fen)
           for ln in result.lines]
    assert got == [
        (5, "LL0001", "DY1001", "DY1001-1", "sale", 123450, 6173),
        (6, "LL0002", "DY1002", "DY1002-1", "sale", 9990, 500),
        (7, "LL0003", "DY1001", "DY1001-1", "refund", 10000, 0),
        (8, "LL0004", "", "", "commission", 1230, 0),
    ]
    assert result.lines[0].occurred_at == dt.datetime(2026, 11, 3, 6, 5, 9, tzinfo=dt.UTC)
    assert result.lines[1].occurred_at == dt.datetime(2026, 11, 30, 15, 30, tzinfo=dt.UTC)
    assert result.lines[0].description == "套餐A"


def test_utf8_bom_file() -> None:
    up = upload("utf8_bom.csv")
    assert up.encoding == "utf-8-sig"
    result = read_lines(up, auto("utf8_bom.csv"), SHANGHAI)
    assert [(ln.line_id, ln.kind, ln.amount_fen) for ln in result.lines] == [
        ("S-1", "sale", 1250), ("S-2", "sale", 800), ("S-3", "refund", 1250)]
    assert result.lines[1].occurred_at == dt.datetime(2026, 12, 1, 1, 30, tzinfo=dt.UTC)


def test_xlsx_with_number_ids_dates_and_text_amounts() -> None:
    result = read_lines(upload("marketplace.xlsx"), auto("marketplace.xlsx"), SHANGHAI)
    assert result.problems == []
    assert [(ln.line_id, ln.order_id, ln.kind, ln.amount_fen, ln.commission_fen) for ln in result.lines] == [
        ("202612010001", "TB5001", "sale", 8880, 444),
        ("202612010002", "TB5002", "sale", 100000, 5000),
        ("202612010003", "TB5001", "refund", 8880, 0),
    ]
    assert result.lines[0].occurred_at == dt.datetime(2026, 12, 1, 4, 0, tzinfo=dt.UTC)


def test_bad_rows_each_get_a_problem_and_repeats_name_the_row_they_repeat() -> None:
    result = read_lines(upload("bad_rows.csv"), auto("bad_rows.csv"), SHANGHAI)
    problems = [(p.row, p.field, p.value, p.code, p.repeats_row) for p in result.problems]
    assert problems == [
        (2, "amount", "12.505", "too_many_decimals", None),
        (3, "amount", "abc", "not_a_number", None),
        (4, "occurred_at", "not a time", "not_a_time", None),
        (4, "kind", "赠品", "unknown_kind", None),
        (6, "line_id", "B-4", "repeated_in_file", 5),
    ]
    assert [(r.row, r.code, r.repeats_row) for r in result.repeats] == [(8, "repeated_same", 7)]
    assert "Row 2" in result.problems[0].message and "第 2 行" in result.problems[0].message_zh


def test_mapped_kind_labels_and_fen_unit() -> None:
    data = "单号,类型,金额\nA1,货款,1250\nA2,售后,300\n".encode()
    spec = MappingSpec(columns={"order_id": "单号", "kind": "类型", "amount": "金额", "occurred_at": ""},
                       kinds={"货款": "sale", "售后": "refund"}, amount_unit="fen")
    with pytest.raises(ValidationFailed) as exc:
        check_mapping(spec)
    assert exc.value.code == "statement_mapping_invalid" and exc.value.extra["missing_fields"] == ["occurred_at"]
    data = "单号,类型,金额,日期\nA1,货款,1250,2026-12-01\nA2,售后,-300,2026-12-02\n".encode()
    spec.columns["occurred_at"] = "日期"
    up = open_statement(io.BytesIO(data), "x.csv", max_bytes=1 << 20)
    result = read_lines(up, spec, "UTC")
    assert [(ln.order_id, ln.kind, ln.amount_fen) for ln in result.lines] == [("A1", "sale", 1250), ("A2", "refund", 300)]
    # no line-id column: the id comes from the row's content, the same for the same row every time
    again = read_lines(open_statement(io.BytesIO(data), "x.csv", max_bytes=1 << 20), spec, "UTC")
    assert [ln.line_id for ln in result.lines] == [ln.line_id for ln in again.lines]
    assert all(ln.line_id.startswith("h:") and len(ln.line_id) == 34 for ln in result.lines)


def test_a_mapping_naming_a_missing_column_is_refused() -> None:
    spec = MappingSpec(columns={"order_id": "订单号", "amount": "金额", "occurred_at": "不存在的列"})
    with pytest.raises(ValidationFailed) as exc:
        read_lines(upload("utf8_bom.csv"), spec, SHANGHAI)
    assert exc.value.code == "statement_mapping_unknown_column"


def test_a_preview_that_stops_early_leaves_the_upload_open() -> None:
    rows = ["流水号,订单号,金额,时间"] + [f"L{i},O{i},1.00,2026-12-01 08:00" for i in range(200)]
    f = io.BytesIO("\n".join(rows).encode("gbk"))
    p = preview(open_statement(f, "x.csv", max_bytes=1 << 20))
    assert len(p.rows) == 10 and not f.closed
    result = read_lines(open_statement(f, "x.csv", max_bytes=1 << 20), MappingSpec(columns=p.suggested), "UTC")
    assert len(result.lines) == 200 and not f.closed


def test_gbk_text_the_detector_gives_up_on_is_read_as_gb18030() -> None:
    rows = ["账单流水号,订单号,金额,时间,备注"] + [f"B{i},O{i},1.50,2026-12-01 08:00:00,{'礼品卡' * 20}"
                                          for i in range(3000)]
    up = open_statement(io.BytesIO("\n".join(rows).encode("gbk")), "x.csv", max_bytes=1 << 24)
    assert up.encoding == "gb18030"
    with pytest.raises(ValidationFailed) as exc:
        open_statement(io.BytesIO(b"\xff\xfe\xfd" * 1000 + b"\x81"), "x.csv", max_bytes=1 << 24)
    assert exc.value.code in ("import_undecodable", "import_binary")
