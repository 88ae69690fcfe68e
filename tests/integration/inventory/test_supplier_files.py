"""Supplier files as shops receive them, over the API: a merged title row above the header (and a 序号
column), unknown headers refused with a request to map the columns, full-width codes, PINs and phones
normalised on import and on every lookup, short-code masks, and report messages with the values and dates
as the user wrote them."""

from __future__ import annotations

import io
import secrets
import uuid
from typing import Any

import msgspec
import openpyxl
from sqlalchemy import select

from core.db.context import tenant_context
from core.inventory.models import Code
from core.inventory.vault import unseal
from tests.integration.console.conftest import browser as console_browser
from tests.integration.console.conftest import text_of
from tests.integration.inventory.test_import_api import (
    confirm_and_wait,
    csv_bytes,
    new_product,
    plain_codes,
    upload,
)
from tests.integration.inventory.test_import_api import shop as import_shop

shop = import_shop  # the fixture: a tenant, its API client and a number + PIN product
browser = console_browser  # the console fixture
FULL_WIDTH = str.maketrans("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", "０１２３４５６７８９ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺ")


def titled_workbook(header: list[str], rows: list[list[Any]], title: str = "某某科技有限公司 卡密发货清单（2031年1月）") -> bytes:
    """An export as suppliers send it: a merged title cell over the columns, a blank line, then the header."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append([title])
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(header))
    ws.append(["导出时间：2031-01-05 10:00"])
    ws.append(header)
    for row in rows:
        ws.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


async def stored_numbers(kernel: Any, tenant_id: uuid.UUID, batch_id: str) -> list[tuple[str, str | None]]:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            cipher = await kernel.keys.cipher(db)
            codes = (await db.execute(select(Code).where(Code.batch_id == uuid.UUID(batch_id)))).scalars().all()
            return [unseal(cipher, c.digest, c.secret) for c in codes]


# ------------------------------------------------------------------------------------------ 28: header rows


async def test_merged_title_row_and_row_numbers_import_the_500_real_codes(client, kernel, settings, shop):
    numbers = plain_codes(500, "GC")
    secret_pins = [f"{secrets.randbelow(10**8):08d}" for _ in range(500)]
    rows = [[i + 1, n, p, "2031-12-31"] for i, (n, p) in enumerate(zip(numbers, secret_pins, strict=True))]
    data = titled_workbook(["序号", "卡号", "卡密", "有效期"], rows)
    r = await upload(client, shop, data, "发货清单.xlsx")
    assert r.status_code == 201, r.text
    report = r.json()["report"]
    assert (report["total_rows"], report["valid_rows"], report["invalid_rows"]) == (500, 500, 0), report
    assert report["columns"] == {"number": "卡号", "pin": "卡密", "expires_at": "有效期"}
    assert report["has_header"] is True and report["header_row"] == 3

    job = await confirm_and_wait(client, shop, settings, r.json()["id"])
    assert job["result"]["imported"] == 500
    stored = await stored_numbers(kernel, shop.tenant.id, job["result"]["batch_id"])
    assert sorted(stored) == sorted(zip(numbers, secret_pins, strict=True))
    got = {n for n, _p in stored}
    assert not got & {str(i) for i in range(1, 501)}  # no row number went in as a code
    assert not got & {"序号", "卡号", "卡密", "有效期"}


async def test_unknown_headers_are_refused_with_a_request_to_map_the_columns(client, kernel, shop):
    numbers = plain_codes(30)
    rows = [[i + 1, n, f"pin{i:05d}"] for i, n in enumerate(numbers)]
    data = titled_workbook(["行", "串号", "口令"], rows)
    r = await upload(client, shop, data, "未知表头.xlsx")
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "import_columns_unrecognised"
    zh = await upload(client, shop, data, "未知表头.xlsx")
    assert "列映射" in zh.json()["detail"] or "映射" in zh.json()["detail"]
    for n in numbers:
        assert n not in r.text

    # the same file with the columns named imports the codes (header found below the title rows)
    mapping = msgspec.json.encode({"number": "串号", "pin": "口令"}).decode()
    ok = await upload(client, shop, data, "未知表头.xlsx", mapping=mapping)
    assert ok.status_code == 201, ok.text
    assert ok.json()["report"]["valid_rows"] == 30 and ok.json()["report"]["header_row"] == 3

    # no header at all, and a 1, 2, 3 … first column: never read by position
    headerless = csv_bytes(["1", numbers[0], "pin00000"], [(i + 2, n, f"pin{i:05d}") for i, n in enumerate(numbers[1:])])
    r = await upload(client, shop, headerless, "无表头.csv")
    assert r.status_code == 422 and r.json()["code"] == "import_columns_unrecognised"
    # a plain headerless file of codes is still read by position
    plain = csv_bytes([numbers[0], "pin00000"], [(n, f"pin{i:05d}") for i, n in enumerate(numbers[1:])])
    r = await upload(client, shop, plain, "codes.csv")
    assert r.status_code == 201 and r.json()["report"]["valid_rows"] == 30


# ------------------------------------------------------------------------------------------ 29: normalising


async def test_full_width_codes_pins_and_phones_are_one_with_ascii(client, kernel, settings, shop):
    number, pin = f"8800{secrets.randbelow(10**8):08d}", f"{secrets.randbelow(10**6):06d}"
    written = number[:4] + "\u3000" + number[4:8] + "－" + number[8:]  # full-width space and dash, as pasted
    data = csv_bytes(["卡号", "卡密"], [(written.translate(FULL_WIDTH), pin.translate(FULL_WIDTH))])
    r = await upload(client, shop, data, "全角.csv")
    assert r.status_code == 201, r.text
    assert r.json()["report"]["valid_rows"] == 1, r.json()["report"]
    job = await confirm_and_wait(client, shop, settings, r.json()["id"])
    assert await stored_numbers(kernel, shop.tenant.id, job["result"]["batch_id"]) == [(number[:8] + "-" + number[8:], pin)]

    # the same code typed in ASCII is a duplicate of the stocked one
    again = await upload(client, shop, csv_bytes(["卡号", "卡密"], [(number, pin)]), "ascii.csv")
    assert again.json()["report"]["problem_counts"] == {"duplicate_existing": 1}

    # granted to a phone written in full-width digits, found by the ASCII phone
    grant = await client.post(
        "/api/v1/grants",
        json={"product_id": str(shop.product_id), "phone": "１３８ ０００１－２３４５", "channel": "none"},
        headers={**shop.creds.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert grant.status_code == 201, grant.text
    member_id = grant.json()["member"]["id"]
    found = await client.get("/api/v1/members", params={"phone": "13800012345"}, headers=shop.creds.headers)
    assert [m["id"] for m in found.json()["items"]] == [member_id]

    # redeemed in ASCII (PIN too), then the full-width form is the same, already redeemed code
    red = await client.post("/api/v1/redemptions", json={"code": number, "pin": pin}, headers=shop.creds.headers)
    assert red.status_code == 201, red.text
    twice = await client.post(
        "/api/v1/redemptions", json={"code": number.translate(FULL_WIDTH), "pin": pin.translate(FULL_WIDTH)},
        headers=shop.creds.headers,
    )
    assert twice.status_code == 409 and twice.json()["code"] == "already_redeemed"


# ------------------------------------------------------------------------------------------ 31: masks


async def test_short_codes_show_nothing_and_long_ones_at_most_a_third(client, kernel, settings, shop):
    product = await new_product(kernel, shop.tenant.id, code_format="number")
    short, eight, long_ = "K7Q2X9", "AB12CD34", "GIFT" + "7" * 8 + "5678"
    r = await upload(client, shop, "\n".join([short, eight, long_]).encode(), "codes.txt", product_id=product)
    assert r.status_code == 201 and r.json()["report"]["valid_rows"] == 3, r.text
    job = await confirm_and_wait(client, shop, settings, r.json()["id"])
    with tenant_context(shop.tenant.id):
        async with kernel.db.transaction() as db:
            rows = (await db.execute(select(Code.last4).where(Code.batch_id == uuid.UUID(job["result"]["batch_id"])))).all()
    assert sorted(r.last4 for r in rows) == ["", "34", "5678"]  # 6 chars: nothing; 8: two; 16: four
    listed = await client.get("/api/v1/codes", params={"batch_id": job["result"]["batch_id"]}, headers=shop.creds.headers)
    assert listed.status_code == 200, listed.text
    assert sorted(c["masked"] for c in listed.json()["items"]) == ["•••• 34", "•••• 5678", "••••••••"]
    assert short not in listed.text and short[-4:] not in listed.text


# ------------------------------------------------------------------------------------------ 32: messages


async def test_report_messages_carry_the_dates_and_values_as_written(client, kernel, shop):
    expired, fine = plain_codes(2)
    rows = [(expired, "pin1", "2025/01/01"), (fine, "pin2", "2031/1/32")]
    r = await upload(client, shop, csv_bytes(["卡号", "卡密", "有效期"], rows), "dates.csv")
    assert r.status_code == 201, r.text
    problems = {p["code"]: p for p in r.json()["report"]["problems"]}
    assert problems["expired"]["value"] == "2025/01/01"
    assert problems["expired"]["message_zh"] == "该卡密已于 2025/01/01 过期"
    assert "01-02" not in r.text and "00:00" not in problems["expired"]["message_zh"]
    assert problems["bad_date"]["value"] == "2031/1/32" and "2031/1/32" in problems["bad_date"]["message_zh"]
    assert "'" not in problems["bad_date"]["message_zh"]  # no Python repr quotes


async def test_binary_file_message_is_all_chinese(client, shop):
    r = await upload(client, shop, secrets.token_bytes(3000).replace(b"\n", b"") + b"\x00", "random.csv")
    assert r.status_code == 422 and r.json()["code"] == "import_binary"
    zh = r.json()["detail"]
    assert "二进制数据" in zh and "binary" not in zh.lower()
    png = await upload(client, shop, b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(300), "photo.csv")
    assert "PNG 图片" in png.json()["detail"] and "image" not in png.json()["detail"]
    en = await client.post(
        "/api/v1/code-imports",
        headers={**shop.creds.headers, "Accept-Language": "en"},
        files={"file": ("photo.csv", b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(300), "application/octet-stream")},
        data={"product_id": str(shop.product_id)},
    )
    assert "a PNG image" in en.json()["detail"]


# ------------------------------------------------------------------------------------------ the console


async def test_console_imports_a_titled_workbook_into_a_stored_value_product(browser, make_tenant, kernel):
    tenant = await make_tenant(plan="growth")
    product_id = await new_product(kernel, tenant.id, kind="stored_value", code_format="number_pin", face_value=5000)
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    numbers = plain_codes(12, "SV")
    rows = [[i + 1, n, f"{i:06d}", "2031/12/31"] for i, n in enumerate(numbers)] + [[13, "7", "000013", ""]]
    data = titled_workbook(["序号", "卡号", "卡密", "有效期"], rows)
    form = await browser.get(f"/console/imports/new?product_id={product_id}")
    assert form.status_code == 200 and str(product_id) in form.text  # stored-value products can be stocked
    r = await browser.submit(
        f"/console/imports/new?product_id={product_id}", "/console/imports",
        {"product_id": str(product_id), "unit_cost": "45", "map_header": "auto"},
        files={"file": ("储值卡.xlsx", data, "application/octet-stream")},
    )
    assert r.status_code == 303, text_of(r.text)[:1500]
    page = await browser.get(r.headers["location"])
    text = text_of(page.text)
    assert 'data-report="valid">12<' in page.text and 'data-report="invalid">1<' in page.text
    assert "第 3 行（其上方为标题行）" in text
    assert "过短: 1" in text and "卡号长度为 1，至少 4 个字符" in text
