"""Bulk grants through the API: GBK and XLSX recipient files, every bad-row kind, whole-file errors,
exactly-once re-runs and resumption, partial stock, the result file and tenant isolation."""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import secrets
import uuid

import msgspec
import pytest
from sqlalchemy import select, update

from core.bulk_grants.models import BulkGrant, BulkGrantKey, BulkGrantRow
from core.bulk_grants.run import run_bulk_grant
from core.db.context import tenant_context
from core.grants.models import Grant, GrantItem
from core.inventory.models import Code
from tests.integration.bulk_grants.conftest import (
    confirm_and_wait,
    count,
    csv_bytes,
    new_product,
    phones,
    upload,
    xlsx_bytes,
)

PROBLEM = "application/problem+json"
CN_HEADER = ["姓名", "手机号", "邮箱", "商品编码", "数量"]


def parse_results(body: bytes) -> list[dict[str, str]]:
    assert body.startswith(codecs.BOM_UTF8)
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


async def test_gbk_csv_with_chinese_headers_end_to_end(client, kernel, settings, shop):
    sku, product_id = await new_product(kernel, shop.tenant.id, 10)
    numbers = phones(4)
    rows = [
        ("张三", numbers[0], "", sku, 1),
        ("李四", numbers[1], "", sku, 2),
        ("王五", f"+86 {numbers[2][:3]}-{numbers[2][3:7]}-{numbers[2][7:]}", "", sku, ""),
        ("赵六", "", "zhao.liu@example.com", sku, 1),
    ]
    r = await upload(
        client, shop, csv_bytes(CN_HEADER, rows, encoding="gbk"), "中秋福利名单.csv", campaign_ref="2026 中秋"
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["status"], body["encoding"], body["file_format"]) == ("validated", "gb18030", "csv")
    report = body["report"]
    assert report["columns"] == {
        "name": "姓名",
        "phone": "手机号",
        "email": "邮箱",
        "sku": "商品编码",
        "quantity": "数量",
    }
    assert (report["total_rows"], report["valid_rows"], report["invalid_rows"]) == (4, 4, 0)
    assert report["products"] == [
        {
            "sku": sku,
            "product_id": str(product_id),
            "name": "员工福利券",
            "rows": 4,
            "quantity": 5,
            "available": 10,
            "shortfall": 0,
        }
    ]
    for n in numbers:
        assert n not in r.text  # contacts never come back in plaintext

    job = await confirm_and_wait(client, shop, settings, body["id"])
    assert job["kind"] == "grants.bulk" and job["done"] == job["total"] == 4
    assert job["result"]["granted"] == 4 and job["result"]["failed"] == 0

    r = await client.get(f"/api/v1/bulk-grants/{body['id']}", headers=shop.creds.headers)
    done = r.json()
    assert (done["status"], done["granted"], done["failed"], done["already_granted"]) == ("done", 4, 0, 0)
    assert await count(kernel, shop.tenant.id, Grant, Grant.source == "bulk") == 4
    assert await count(kernel, shop.tenant.id, GrantItem) == 5
    assert (
        await count(kernel, shop.tenant.id, Code, Code.product_id == product_id, Code.state == "available")
        == 5
    )

    r = await client.get(f"/api/v1/bulk-grants/{body['id']}/results.csv", headers=shop.creds.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    results = parse_results(r.content)
    assert [row["行号"] for row in results] == ["2", "3", "4", "5"]
    assert [row["姓名"] for row in results] == ["张三", "李四", "王五", "赵六"]
    assert all(row["结果"] == "已发放" and row["发放单号"].startswith("G") for row in results)
    assert results[0]["联系方式"] == f"{numbers[0][:3]}****{numbers[0][-4:]}"
    assert results[3]["联系方式"] == "z***@example.com"
    assert len(results[1]["卡券（掩码）"].split("; ")) == 2
    with tenant_context(shop.tenant.id):
        async with kernel.db.transaction() as db:
            last4s = set((await db.execute(select(Code.last4).where(Code.state == "issued"))).scalars())
            stored = (
                await db.execute(select(BulkGrantRow.contact_secret, BulkGrantRow.contact_masked))
            ).all()
    text = r.content.decode("utf-8-sig")
    for masked_codes in (row["卡券（掩码）"] for row in results):
        assert all(c.startswith("•") and c[-4:] in last4s for c in masked_codes.split("; "))
    for n in numbers:
        assert n not in text
        assert all(n.encode() not in (secret or b"") and n not in shown for secret, shown in stored)
    r = await client.get(
        f"/api/v1/bulk-grants/{body['id']}/results.csv", params={"lang": "en"}, headers=shop.creds.headers
    )
    assert parse_results(r.content)[0]["result"] == "granted"


async def test_xlsx_with_english_headers_and_numeric_cells(client, kernel, settings, shop):
    sku, _ = await new_product(kernel, shop.tenant.id, 6)
    numbers = phones(2)
    data = xlsx_bytes(
        [
            ["Name", "Phone", "E-mail", "SKU", "Quantity"],
            ["Alice", int(numbers[0]), None, sku, 2],
            ["Bob", float(numbers[1]), "bob@example.com", sku, 3.0],
        ]
    )
    r = await upload(client, shop, data, "welfare.xlsx", channel="none")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["file_format"] == "xlsx" and body["channel"] == "none"
    assert (body["report"]["valid_rows"], body["report"]["products"][0]["quantity"]) == (2, 5)
    job = await confirm_and_wait(client, shop, settings, body["id"])
    assert job["result"]["granted"] == 2
    assert await count(kernel, shop.tenant.id, GrantItem) == 5
    assert (
        await count(kernel, shop.tenant.id, Grant, Grant.channel.is_(None)) == 2
    )  # channel "none": no delivery


async def test_every_kind_of_bad_row_is_reported_and_only_good_rows_are_granted(
    client, kernel, settings, shop
):
    sku, _ = await new_product(kernel, shop.tenant.id, 10)
    inactive_sku, _ = await new_product(kernel, shop.tenant.id, 5, status="inactive")
    good = phones(9)
    rows = [
        ("好人", good[0], "", sku, 1),  # row 2: good
        ("无联系方式", "", "", sku, 1),  # row 3: missing_contact
        ("坏手机", "12345", "", sku, 1),  # row 4: bad_phone
        ("坏邮箱", "", "not-an-email", sku, 1),  # row 5: bad_email
        ("无商品", good[1], "", "", 1),  # row 6: missing_sku
        ("未知商品", good[2], "", "NOPE-404", 1),  # row 7: unknown_sku
        ("下架商品", good[3], "", inactive_sku, 1),  # row 8: product_inactive
        ("零", good[4], "", sku, 0),  # row 9: bad_quantity
        ("太多", good[5], "", sku, 101),  # row 10: bad_quantity
        ("不是数字", good[6], "", sku, "两张"),  # row 11: bad_quantity
        ("重复", good[0], "", sku, 1),  # row 12: duplicate_in_file (same phone and product as row 2)
        ("好人二", good[7], "", sku, 2),  # row 13: good
    ]
    r = await upload(client, shop, csv_bytes(CN_HEADER, rows), "bad.csv")
    assert r.status_code == 201, r.text
    report = r.json()["report"]
    assert (report["total_rows"], report["valid_rows"], report["invalid_rows"]) == (12, 2, 10)
    assert report["problem_counts"] == {
        "missing_contact": 1,
        "bad_phone": 1,
        "bad_email": 1,
        "missing_sku": 1,
        "unknown_sku": 1,
        "product_inactive": 1,
        "bad_quantity": 3,
        "duplicate_in_file": 1,
    }
    by_row = {p["row"]: p["codes"] for p in report["problems"]}
    assert by_row == {
        3: ["missing_contact"],
        4: ["bad_phone"],
        5: ["bad_email"],
        6: ["missing_sku"],
        7: ["unknown_sku"],
        8: ["product_inactive"],
        9: ["bad_quantity"],
        10: ["bad_quantity"],
        11: ["bad_quantity"],
        12: ["duplicate_in_file"],
    }
    assert report["products"][0]["quantity"] == 3

    job = await confirm_and_wait(client, shop, settings, r.json()["id"])
    assert job["result"]["granted"] == 2
    r = await client.get(
        f"/api/v1/bulk-grants/{r.json()['id']}/results.csv", params={"lang": "en"}, headers=shop.creds.headers
    )
    results = {int(row["row"]): row for row in parse_results(r.content)}
    assert results[2]["result"] == results[13]["result"] == "granted"
    assert results[4]["result"] == "not granted (bad row)" and results[4]["error_code"] == "bad_phone"
    assert results[12]["error_code"] == "duplicate_in_file"


async def test_whole_file_errors_are_clear_problems(client, kernel, shop, monkeypatch):
    sku, _ = await new_product(kernel, shop.tenant.id, 0)
    cases = [
        (b"", "empty.csv", 422, "import_empty"),
        (",".join(CN_HEADER).encode("gbk") + b"\r\n", "header-only.csv", 422, "import_empty"),
        (b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(500), "photo.csv", 422, "import_binary"),
        (secrets.token_bytes(2000).replace(b"\n", b"") + b"\x00", "random.csv", 422, "import_binary"),
        (b"not really a workbook", "list.xlsx", 422, "import_bad_spreadsheet"),
        (b"x", "list.pdf", 422, "import_unknown_format"),
        ("13800138000,张三\r\n13900139000,李四\r\n".encode(), "no-header.csv", 422, "bulk_missing_columns"),
        (
            csv_bytes(["姓名", "商品编码"], [("张三", sku)]),
            "no-contact-column.csv",
            422,
            "bulk_missing_columns",
        ),
    ]
    for data, name, status, code in cases:
        r = await upload(client, shop, data, name)
        assert (r.status_code, r.headers["content-type"]) == (status, PROBLEM), (name, r.text)
        assert r.json()["code"] == code and r.json()["detail"], (name, r.text)
    r = await client.post("/api/v1/bulk-grants", headers=shop.creds.headers, json={"file": "x"})
    assert (r.status_code, r.json()["code"]) == (422, "bulk_file_required")
    r = await client.post(
        "/api/v1/bulk-grants",
        headers=shop.creds.headers,
        data={"campaign_ref": "x"},
        files={"other": ("a.csv", b"a")},
    )
    assert (r.status_code, r.json()["code"]) == (422, "bulk_file_required")
    r = await upload(
        client, shop, csv_bytes(CN_HEADER, [("a", phones(1)[0], "", sku, 1)]), "a.csv", channel="fax"
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "channel"

    small = msgspec.structs.replace(kernel.settings, max_import_bytes=1000)
    monkeypatch.setattr(kernel, "settings", small)
    big = csv_bytes(CN_HEADER, [("员工", p, "", sku, 1) for p in phones(80)])
    r = await upload(client, shop, big, "big.csv")  # declared length over the limit: refused before reading
    assert (r.status_code, r.headers["content-type"], r.json()["code"]) == (413, PROBLEM, "import_too_large")
    r = await upload(
        client, shop, big[:1100], "just-over.csv"
    )  # within the multipart slack, the file is over
    assert (r.status_code, r.json()["code"]) == (413, "import_too_large"), r.text
    assert await count(kernel, shop.tenant.id, BulkGrant) == 0


async def test_rerunning_the_same_file_grants_nothing_twice(client, kernel, settings, shop):
    sku, _ = await new_product(kernel, shop.tenant.id, 20)
    numbers = phones(4)
    rows = [(f"员工{i}", p, "", sku, 1) for i, p in enumerate(numbers[:3])]
    data = csv_bytes(CN_HEADER, rows, encoding="gbk")
    first = (await upload(client, shop, data, "list.csv")).json()
    await confirm_and_wait(client, shop, settings, first["id"])
    assert await count(kernel, shop.tenant.id, Grant) == 3

    # The same file again (re-encoded as XLSX and under another name): every row is already granted.
    again = xlsx_bytes([CN_HEADER, *[list(r) for r in rows]])
    r = await upload(client, shop, again, "list (1).xlsx")
    body = r.json()
    assert (body["report"]["valid_rows"], body["report"]["already_granted"]) == (0, 3), body
    r = await client.post(f"/api/v1/bulk-grants/{body['id']}/confirm", headers=shop.creds.headers)
    assert (r.status_code, r.json()["code"]) == (422, "bulk_nothing_to_grant")
    r = await client.get(
        f"/api/v1/bulk-grants/{body['id']}/results.csv", params={"lang": "en"}, headers=shop.creds.headers
    )
    again_rows = parse_results(r.content)
    assert {row["result"] for row in again_rows} == {"granted before"}
    first_rows = parse_results(
        (
            await client.get(
                f"/api/v1/bulk-grants/{first['id']}/results.csv",
                params={"lang": "en"},
                headers=shop.creds.headers,
            )
        ).content
    )
    assert [(r["grant ref"], r["codes (masked)"]) for r in again_rows] == [
        (r["grant ref"], r["codes (masked)"]) for r in first_rows
    ]  # the earlier grant of each row is named

    # An edited file (one new recipient, rows reordered) grants only the new row.
    edited = csv_bytes(CN_HEADER, [("新人", numbers[3], "", sku, 1), *reversed(rows)])
    body = (await upload(client, shop, edited, "list.csv")).json()
    assert (body["report"]["valid_rows"], body["report"]["already_granted"]) == (1, 3)
    job = await confirm_and_wait(client, shop, settings, body["id"])
    assert job["result"]["granted"] == 1
    assert await count(kernel, shop.tenant.id, Grant) == 4

    # Another campaign is a new scope: the same people can get the product again.
    body = (await upload(client, shop, data, "list.csv", campaign_ref="next month")).json()
    assert (body["report"]["valid_rows"], body["report"]["already_granted"]) == (3, 0)

    # Confirming a finished bulk grant again is refused.
    r = await client.post(f"/api/v1/bulk-grants/{first['id']}/confirm", headers=shop.creds.headers)
    assert (r.status_code, r.json()["code"]) == (409, "bulk_grant_already_done")


async def _confirm_without_job(kernel, tenant_id: uuid.UUID, bulk_id: uuid.UUID) -> None:
    from core.bulk_grants.services import confirm_bulk_grant

    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            await confirm_bulk_grant(db, bulk_id, enqueue=False)


async def test_a_resumed_or_redelivered_job_skips_rows_already_done(client, kernel, shop):
    sku, _ = await new_product(kernel, shop.tenant.id, 20)
    rows = [(f"员工{i}", p, "", sku, 1) for i, p in enumerate(phones(5))]
    body = (await upload(client, shop, csv_bytes(CN_HEADER, rows), "list.csv")).json()
    bulk_id = uuid.UUID(body["id"])
    await _confirm_without_job(kernel, shop.tenant.id, bulk_id)
    with tenant_context(shop.tenant.id):
        outcome = await run_bulk_grant(kernel, bulk_id)
        assert (outcome.status, outcome.granted) == ("done", 5)
        # A redelivered message after the run finished does nothing.
        assert (await run_bulk_grant(kernel, bulk_id)).status == "skipped"
        # A crash that left rows "pending" although their grant committed (the ledger holds their keys):
        # the resumed run finds the keys and grants nothing again.
        async with kernel.db.transaction() as db:
            await db.execute(
                update(BulkGrantRow)
                .where(BulkGrantRow.bulk_grant_id == bulk_id)
                .values(status="pending", grant_id=None, grant_ref=None)
            )
            await db.execute(update(BulkGrant).where(BulkGrant.id == bulk_id).values(status="running"))
        outcome = await run_bulk_grant(kernel, bulk_id)
        assert (outcome.status, outcome.granted, outcome.already_granted) == ("done", 0, 5)
        async with kernel.db.transaction() as db:
            keys = (
                (await db.execute(select(BulkGrantKey).where(BulkGrantKey.bulk_grant_id == bulk_id)))
                .scalars()
                .all()
            )
            refs = {r.grant_ref for r in (await db.execute(select(BulkGrantRow))).scalars()}
    assert len(keys) == 5 and all(k.grant_ref for k in keys)
    assert refs == {k.grant_ref for k in keys}  # rows point at the grants made the first time
    assert await count(kernel, shop.tenant.id, Grant) == 5


async def test_two_runs_at_once_grant_each_row_once(client, kernel, shop, test_env):
    if test_env.backend != "postgresql":
        pytest.skip("concurrency is tested on PostgreSQL")
    sku, _ = await new_product(kernel, shop.tenant.id, 60)
    rows = [(f"员工{i}", p, "", sku, 1) for i, p in enumerate(phones(40))]
    body = (await upload(client, shop, csv_bytes(CN_HEADER, rows), "list.csv")).json()
    bulk_id = uuid.UUID(body["id"])
    await _confirm_without_job(kernel, shop.tenant.id, bulk_id)
    with tenant_context(shop.tenant.id):
        outcomes = await asyncio.gather(run_bulk_grant(kernel, bulk_id), run_bulk_grant(kernel, bulk_id))
    assert {o.status for o in outcomes} == {"done"}
    assert await count(kernel, shop.tenant.id, Grant) == 40
    assert await count(kernel, shop.tenant.id, BulkGrantRow, BulkGrantRow.status == "granted") == 40
    assert await count(kernel, shop.tenant.id, Code, Code.state == "issued") == 40


async def test_partial_stock_grants_what_there_is_and_reports_the_rest(client, kernel, settings, shop):
    sku, _ = await new_product(kernel, shop.tenant.id, 3)
    rows = [(f"员工{i}", p, "", sku, 1) for i, p in enumerate(phones(5))]
    body = (await upload(client, shop, csv_bytes(CN_HEADER, rows), "list.csv")).json()
    product = body["report"]["products"][0]
    assert (product["quantity"], product["available"], product["shortfall"]) == (5, 3, 2)
    assert body["report"]["short_of_stock"] is True
    job = await confirm_and_wait(client, shop, settings, body["id"])
    assert (job["result"]["granted"], job["result"]["failed"]) == (3, 2)
    assert job["result"]["errors"] == {"out_of_stock": 2}
    r = await client.get(f"/api/v1/bulk-grants/{body['id']}", headers=shop.creds.headers)
    assert (r.json()["granted"], r.json()["failed"]) == (3, 2)
    r = await client.get(
        f"/api/v1/bulk-grants/{body['id']}/results.csv", params={"lang": "en"}, headers=shop.creds.headers
    )
    results = parse_results(r.content)
    assert [row["result"] for row in results] == ["granted"] * 3 + ["failed"] * 2
    assert [row["error_code"] for row in results[3:]] == ["out_of_stock", "out_of_stock"]

    # Restocked: the same file grants the two that failed, and only them.
    from tests.integration.inventory.stocking import stock_product

    await stock_product(
        kernel, shop.tenant.id, 5, product_id=uuid.UUID(product["product_id"]), with_pin=False
    )
    body = (await upload(client, shop, csv_bytes(CN_HEADER, rows), "list.csv")).json()
    assert (body["report"]["valid_rows"], body["report"]["already_granted"]) == (2, 3)
    job = await confirm_and_wait(client, shop, settings, body["id"])
    assert job["result"]["granted"] == 2
    assert await count(kernel, shop.tenant.id, Grant) == 5


async def test_list_and_scopes(client, kernel, shop, make_api_client):
    sku, _ = await new_product(kernel, shop.tenant.id, 1)
    data = csv_bytes(CN_HEADER, [("a", phones(1)[0], "", sku, 1)])
    created = [(await upload(client, shop, data, f"{i}.csv")).json()["id"] for i in range(3)]
    r = await client.get("/api/v1/bulk-grants", params={"limit": 2}, headers=shop.creds.headers)
    page = r.json()
    assert [b["id"] for b in page["items"]] == created[::-1][:2] and page["next_cursor"]
    r = await client.get(
        "/api/v1/bulk-grants", params={"cursor": page["next_cursor"]}, headers=shop.creds.headers
    )
    assert [b["id"] for b in r.json()["items"]] == [created[0]]
    reader = await make_api_client(shop.tenant, ["grants:read", "jobs:read"])
    r = await client.post("/api/v1/bulk-grants", headers=reader.headers, files={"file": ("a.csv", data)})
    assert (r.status_code, r.json()["code"]) == (403, "insufficient_scope")
    r = await client.post(f"/api/v1/bulk-grants/{created[0]}/confirm", headers=reader.headers)
    assert r.status_code == 403
    r = await client.get(f"/api/v1/bulk-grants/{created[0]}", headers=reader.headers)
    assert r.status_code == 200


async def test_tenant_b_cannot_see_confirm_or_download_tenant_as_bulk_grant(
    client, kernel, settings, shop, make_tenant, make_api_client
):
    sku, _ = await new_product(kernel, shop.tenant.id, 2)
    body = (
        await upload(client, shop, csv_bytes(CN_HEADER, [("a", phones(1)[0], "", sku, 1)]), "a.csv")
    ).json()
    other = await make_tenant()
    creds = await make_api_client(other)
    for method, path in (
        ("GET", f"/api/v1/bulk-grants/{body['id']}"),
        ("POST", f"/api/v1/bulk-grants/{body['id']}/confirm"),
        ("GET", f"/api/v1/bulk-grants/{body['id']}/results.csv"),
    ):
        r = await client.request(method, path, headers=creds.headers)
        assert (r.status_code, r.json()["code"]) == (404, "bulk_grant_not_found"), (path, r.text)
    r = await client.get("/api/v1/bulk-grants", headers=creds.headers)
    assert r.json()["items"] == []
    # Tenant B's file naming tenant A's SKU finds no such product.
    r = await client.post(
        "/api/v1/bulk-grants",
        headers=creds.headers,
        files={"file": ("b.csv", csv_bytes(CN_HEADER, [("b", phones(1)[0], "", sku, 1)]))},
    )
    assert r.json()["report"]["problem_counts"] == {"unknown_sku": 1}
    r = await client.get(f"/api/v1/bulk-grants/{body['id']}", headers=shop.creds.headers)
    assert r.json()["status"] == "validated"
