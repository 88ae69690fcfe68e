"""The result file a shop owner downloads: the console's words for each problem (Chinese in zh-CN, English
in en, the stable code in its own column), and every value shown as the file had it."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re

from core.bulk_grants.messages import ROW_MESSAGES
from tests.integration.bulk_grants.conftest import (
    confirm_and_wait,
    csv_bytes,
    new_product,
    phones,
    upload,
    xlsx_bytes,
)
from tests.integration.bulk_grants.test_console import SHOW, login
from tests.integration.console.conftest import text_of

HEADER = ["姓名", "手机号", "商品编码", "数量"]
CODE_LIKE = re.compile(r"[a-z]+_[a-z_]+")  # bad_phone, out_of_stock …


def rows_of(body: bytes) -> list[dict[str, str]]:
    assert body.startswith(codecs.BOM_UTF8)
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


async def test_the_result_file_says_what_the_console_says_with_the_values_as_written(
    browser, kernel, make_tenant, make_user
):
    tenant = await make_tenant(plan="growth")
    owner = await make_user(tenant, "owner")
    sku, _ = await new_product(kernel, tenant.id, 5)
    good = phones(5)
    data = csv_bytes(
        HEADER,
        [
            ("张三", good[0], sku, 1),  # row 2: fine
            ("李四", "138-1234-567", sku, 1),  # row 3: 10 digits, not a mobile number
            ("王五", good[1], sku, -2),  # row 4: a negative quantity
            ("赵六", good[2], sku, "两张"),  # row 5: words
            ("钱七", good[3], sku, "2025/01/01"),  # row 6: a date typed into the quantity column
            ("孙八", "12345", "NOPE-404", 1),  # row 7: two problems
            ("=HYPERLINK(1)", good[4], sku, 1),  # row 8: a formula is neutralised, not run by Excel
        ],
        encoding="gbk",
    )
    await login(browser, tenant, owner)
    r = await browser.submit(
        "/console/bulk-grants",
        "/console/bulk-grants",
        {"campaign_ref": "中秋", "channel": "none"},
        files={"file": ("名单.csv", data, "text/csv")},
    )
    assert r.status_code == 303, r.text
    bulk_id = SHOW.match(r.headers["location"]).group(1)
    page = await browser.get(f"/console/bulk-grants/{bulk_id}")
    # What the console's check shows per problem code: "<message>: <count>"
    shown = {
        code: text_of(chip).rsplit(":", 1)[0].strip()
        for code, chip in re.findall(r'<li data-problem="([a-z_]+)">(.*?)</li>', page.text)
    }
    assert set(shown) == {"bad_phone", "bad_quantity", "unknown_sku"}

    results = {
        int(r["行号"]): r
        for r in rows_of((await browser.get(f"/console/bulk-grants/{bulk_id}/results.csv")).content)
    }
    assert list(next(iter(results.values()))) == [
        "行号",
        "姓名",
        "联系方式",
        "商品编码",
        "数量",
        "结果",
        "发放单号",
        "卡券（掩码）",
        "错误",
        "error_code",
    ]
    # The console's words, in Chinese; the stable code apart.
    assert results[3]["错误"] == shown["bad_phone"] == "不是有效的中国大陆手机号"
    assert results[3]["error_code"] == "bad_phone"
    assert results[4]["错误"] == results[5]["错误"] == results[6]["错误"] == shown["bad_quantity"]
    assert results[7]["错误"] == f"{shown['bad_phone']}；{shown['unknown_sku']}"
    assert results[7]["error_code"] == "bad_phone;unknown_sku"
    for row in results.values():
        assert not CODE_LIKE.search(row["错误"]), row
    assert results[2]["错误"] == results[2]["error_code"] == ""
    # The values as written: -2 stays -2, words stay words, a date stays the date typed.
    assert [results[n]["数量"] for n in (2, 4, 5, 6)] == ["1", "-2", "两张", "2025/01/01"]
    # A phone that is not one: its written form, the middle hidden as for every contact in this file.
    assert results[3]["联系方式"] == "138-***4-567"
    assert results[7]["联系方式"] == "12345" and results[7]["商品编码"] == "NOPE-404"
    assert results[4]["联系方式"] == f"{good[1][:3]}****{good[1][-4:]}"
    assert results[8]["姓名"] == "'=HYPERLINK(1)"
    body = (await browser.get(f"/console/bulk-grants/{bulk_id}/results.csv")).content.decode("utf-8-sig")
    assert "1381234567" not in body and "138-1234-567" not in body
    assert not any(n in body for n in good)

    await browser.get("/console/lang?to=en&next=/console/bulk-grants")
    page = await browser.get(f"/console/bulk-grants/{bulk_id}")
    shown_en = {
        code: text_of(chip).rsplit(":", 1)[0].strip()
        for code, chip in re.findall(r'<li data-problem="([a-z_]+)">(.*?)</li>', page.text)
    }
    english = {
        int(r["row"]): r
        for r in rows_of((await browser.get(f"/console/bulk-grants/{bulk_id}/results.csv")).content)
    }
    assert english[3]["error"] == shown_en["bad_phone"] == "Not a mainland mobile number"
    assert english[7]["error"] == f"{shown_en['bad_phone']}; {shown_en['unknown_sku']}"
    assert english[4]["quantity"] == "-2" and english[3]["error_code"] == "bad_phone"


async def test_rows_that_fail_when_granted_are_explained_in_words(client, kernel, settings, shop):
    sku, _ = await new_product(kernel, shop.tenant.id, 1)
    body = (
        await upload(
            client,
            shop,
            csv_bytes(HEADER, [(f"员工{i}", p, sku, 1) for i, p in enumerate(phones(2))]),
            "a.csv",
        )
    ).json()
    await confirm_and_wait(client, shop, settings, body["id"])
    r = await client.get(f"/api/v1/bulk-grants/{body['id']}/results.csv", headers=shop.creds.headers)
    zh = rows_of(r.content)
    assert [row["结果"] for row in zh] == ["已发放", "发放失败"]
    assert (zh[1]["错误"], zh[1]["error_code"]) == ("库存不足", "out_of_stock")
    r = await client.get(
        f"/api/v1/bulk-grants/{body['id']}/results.csv", params={"lang": "en"}, headers=shop.creds.headers
    )
    assert (rows_of(r.content)[1]["error"], rows_of(r.content)[1]["error_code"]) == (
        "Out of stock",
        "out_of_stock",
    )


async def test_spreadsheet_cells_are_shown_as_the_sheet_has_them(client, kernel, shop):
    sku, _ = await new_product(kernel, shop.tenant.id, 1)
    good = phones(3)
    data = xlsx_bytes(
        [
            ["姓名", "手机号", "商品编码", "数量"],
            ["甲", int(good[0]), sku, -2],  # a number cell
            ["乙", int(good[1]), sku, dt.datetime(2025, 1, 1)],  # a date cell (Excel turned "1/1" into one)
            ["丙", 1381234567, sku, 1],  # a phone typed as a number, one digit short
        ]
    )
    body = (await upload(client, shop, data, "名单.xlsx")).json()
    r = await client.get(f"/api/v1/bulk-grants/{body['id']}/results.csv", headers=shop.creds.headers)
    rows = rows_of(r.content)
    assert [row["数量"] for row in rows] == ["-2", "2025-01-01", "1"]  # not 0, not 2025-01-01T00:00:00
    assert rows[2]["联系方式"] == "138***4567" and rows[2]["错误"] == "不是有效的中国大陆手机号"


def test_every_problem_code_has_both_languages():
    from core.bulk_grants.parsing import PROBLEMS

    assert set(PROBLEMS) <= set(ROW_MESSAGES)
    for code, (en, zh) in ROW_MESSAGES.items():
        assert en and zh and en != zh and not CODE_LIKE.fullmatch(en), code
        assert re.search(r"[\u4e00-\u9fff]", zh), code
