"""Statement files through the API: GBK with Chinese headers and title rows, UTF-8 with BOM, XLSX; the same
file twice doubles nothing; bad rows store nothing and name each row's problem; a line repeated inside a file
is reported with the row it repeats; the saved mapping is reused for the next file."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from core.db.context import tenant_context
from core.settlement.models import Statement, StatementLine
from tests.integration.statements.helpers import FIXTURES, import_file, register_builtin, sandbox_account


@pytest.fixture
async def shop(client: Any, kernel: Any, app: Any, make_tenant: Any, make_api_client: Any) -> Any:
    register_builtin(app)
    tenant = await make_tenant(plan="growth")
    creds = await make_api_client(tenant)
    account_id = await sandbox_account(kernel, tenant.id)
    return tenant, creds.headers, account_id


async def _count(kernel: Any, tenant_id: Any, model: Any) -> int:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return int(await db.scalar(select(func.count()).select_from(model)) or 0)


async def test_gbk_file_imported_once_and_again_doubles_nothing(client, kernel, shop) -> None:
    tenant, headers, account_id = shop
    r = await import_file(client, headers, account_id, "locallife_gbk.csv")
    assert r.status_code == 201, r.text
    first = r.json()
    assert (first["source"], first["encoding"], first["lines_total"], first["lines_new"], first["lines_repeated"]) == (
        "file", "gb18030", 4, 4, 0)
    assert len(first["digest"]) == 64 and first["filename"] == "locallife_gbk.csv"
    lines = (await client.get(f"/api/v1/statements/{first['id']}/lines", headers=headers)).json()["items"]
    assert [(ln["line_id"], ln["kind"], ln["amount_fen"], ln["commission_fen"], ln["period"], ln["row_number"])
            for ln in lines] == [
        ("LL0001", "sale", 123450, 6173, "2026-11", 5),
        ("LL0002", "sale", 9990, 500, "2026-11", 6),  # 23:30 in Shanghai on the 30th: still November
        ("LL0003", "refund", 10000, 0, "2026-11", 7),
        ("LL0004", "commission", 1230, 0, "2026-11", 8),
    ]
    assert lines[1]["occurred_at"].startswith("2026-11-30T15:30:00")

    r = await import_file(client, headers, account_id, "locallife_gbk.csv")
    assert r.status_code == 201, r.text
    again = r.json()
    assert (again["lines_new"], again["lines_repeated"], again["digest"]) == (0, 4, first["digest"])
    assert await _count(kernel, tenant.id, StatementLine) == 4
    listed = (await client.get("/api/v1/statements", params={"account": str(account_id)}, headers=headers)).json()
    assert [s["id"] for s in listed["items"]] == [again["id"], first["id"]]
    one = (await client.get(f"/api/v1/statements/{again['id']}", headers=headers)).json()
    assert one["lines_repeated"] == 4
    assert (await client.get(f"/api/v1/statements/{again['id']}/lines", headers=headers)).json()["items"] == []


async def test_utf8_bom_and_xlsx_files(client, shop) -> None:
    _tenant, headers, account_id = shop
    r = await import_file(client, headers, account_id, "utf8_bom.csv")
    assert r.status_code == 201, r.text
    assert (r.json()["encoding"], r.json()["lines_new"]) == ("utf-8-sig", 3)
    r = await import_file(client, headers, account_id, "marketplace.xlsx")
    assert r.status_code == 201, r.text
    statement = r.json()
    assert statement["lines_new"] == 3
    lines = (await client.get(f"/api/v1/statements/{statement['id']}/lines", params={"limit": 2},
                              headers=headers)).json()
    assert [ln["amount_fen"] for ln in lines["items"]] == [8880, 100000] and lines["next_cursor"]
    rest = (await client.get(f"/api/v1/statements/{statement['id']}/lines",
                             params={"cursor": lines["next_cursor"]}, headers=headers)).json()
    assert [(ln["line_id"], ln["kind"], ln["amount_fen"]) for ln in rest["items"]] == [
        ("202612010003", "refund", 8880)]
    assert rest["next_cursor"] is None


async def test_bad_rows_store_nothing_and_each_problem_names_its_row(client, kernel, shop) -> None:
    tenant, headers, account_id = shop
    r = await import_file(client, headers, account_id, "bad_rows.csv")
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "statement_rows_invalid" and body["rows"] == 7 and body["rows_rejected"] == 4
    assert [(p["row"], p["field"], p["value"], p["code"]) for p in body["problems"]] == [
        (2, "amount", "12.505", "too_many_decimals"),
        (3, "amount", "abc", "not_a_number"),
        (4, "occurred_at", "not a time", "not_a_time"),
        (4, "kind", "赠品", "unknown_kind"),
        (6, "line_id", "B-4", "repeated_in_file"),
    ]
    assert body["problems"][-1]["repeats_row"] == 5
    assert await _count(kernel, tenant.id, Statement) == 0
    assert await _count(kernel, tenant.id, StatementLine) == 0


async def test_an_identical_row_repeated_in_the_file_is_stored_once_and_reported(client, shop) -> None:
    _tenant, headers, account_id = shop
    data = ("流水号,订单号,金额,时间\nR-1,O-1,1.00,2026-12-01 08:00\nR-2,O-2,2.00,2026-12-01 09:00\n"
            "R-1,O-1,1.00,2026-12-01 08:00\n").encode("gbk")
    r = await import_file(client, headers, account_id, "repeat.csv", data)
    assert r.status_code == 201, r.text
    s = r.json()
    assert (s["lines_total"], s["lines_new"], s["lines_repeated"]) == (3, 2, 1)
    assert [(p["row"], p["code"], p["repeats_row"]) for p in s["problems"]] == [(4, "repeated_same", 2)]
    # the same line id later with other values: the stored line is kept, the difference noted
    data = "流水号,订单号,金额,时间\nR-2,O-2,2.50,2026-12-01 09:00\n".encode()
    s = (await import_file(client, headers, account_id, "changed.csv", data)).json()
    assert (s["lines_new"], s["lines_repeated"]) == (0, 1)
    assert [p["code"] for p in s["problems"]] == ["differs_from_stored"]


async def test_mapping_saved_once_and_used_for_the_next_file(client, shop) -> None:
    _tenant, headers, account_id = shop
    url = f"/api/v1/statement-mappings/{account_id}"
    assert (await client.get(url, headers=headers)).json()["saved"] is False
    custom = "单据,渠道单,款项,发生额(分),记账日\nX1,W-1,货款,1999,2026-12-05\nX2,W-1,售后,-999,2026-12-06\n"
    r = await import_file(client, headers, account_id, "custom.csv", custom.encode("gbk"))
    assert r.status_code == 422 and r.json()["code"] == "statement_mapping_required"
    assert "渠道单" in r.json()["headers"]

    bad = await client.put(url, headers=headers, json={"columns": {"order_id": "渠道单"}})
    assert bad.status_code == 422 and bad.json()["code"] == "statement_mapping_invalid"
    assert (await client.put(url, headers=headers, json={"columns": {"order_id": "x", "amount": 12.5}})).status_code == 422
    mapping = {"columns": {"line_id": "单据", "order_id": "渠道单", "kind": "款项", "amount": "发生额(分)",
                           "occurred_at": "记账日"}, "kinds": {"货款": "sale", "售后": "refund"}, "amount_unit": "fen"}
    r = await client.put(url, headers=headers, json=mapping)
    assert r.status_code == 200, r.text
    assert r.json()["saved"] is True and r.json()["kinds"] == {"货款": "sale", "售后": "refund"}

    r = await import_file(client, headers, account_id, "custom.csv", custom.encode("gbk"))
    assert r.status_code == 201, r.text
    lines = (await client.get(f"/api/v1/statements/{r.json()['id']}/lines", headers=headers)).json()["items"]
    assert [(ln["line_id"], ln["kind"], ln["amount_fen"]) for ln in lines] == [("X1", "sale", 1999), ("X2", "refund", 999)]

    preview = await client.post("/api/v1/statements/previews", headers=headers, data={"account_id": str(account_id)},
                                files={"file": ("locallife_gbk.csv", (FIXTURES / "locallife_gbk.csv").read_bytes())})
    assert preview.status_code == 200, preview.text
    p = preview.json()
    assert p["header_row"] == 4 and p["suggested"]["order_id"] == "订单号" and p["saved"]["saved"] is True
    assert p["rows"][0][0] == "LL0001"


async def test_a_long_file_without_a_saved_mapping(client, shop) -> None:
    _tenant, headers, account_id = shop
    rows = ["账单流水号,订单号,交易类型,金额(元),入账时间"] + [
        f"L{i:05d},O{i // 3},销售,{i}.{i % 100:02d},2026-12-01 08:{i % 60:02d}:00" for i in range(1, 2501)]
    r = await import_file(client, headers, account_id, "long.csv", "\n".join(rows).encode("gbk"))
    assert r.status_code == 201, r.text
    assert (r.json()["lines_new"], r.json()["lines_total"]) == (2500, 2500)


async def test_upload_refusals(client, shop, make_tenant, make_api_client) -> None:
    _tenant, headers, account_id = shop
    r = await client.post("/api/v1/statements/imports", headers=headers, data={"account_id": str(account_id)})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "file"
    r = await client.post("/api/v1/statements/imports", headers=headers, data={"account_id": "nope"},
                          files={"file": ("a.csv", b"a,b\n1,2\n")})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "account_id"
    r = await client.post("/api/v1/statements/imports", headers=headers, data={"account_id": str(account_id)},
                          files={"file": ("a.png", b"\x89PNG\r\n\x1a\n....")})
    assert r.status_code == 422
    r = await client.get(f"/api/v1/statements/{account_id}", headers=headers)
    assert r.status_code == 404 and r.json()["code"] == "statement_not_found"
    reader = await make_api_client(_tenant, scopes=["settlement:read"])
    r = await import_file(client, reader.headers, account_id, "utf8_bom.csv")
    assert r.status_code == 403
