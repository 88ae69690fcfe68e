"""Product code rules: card number / PIN length and charset on the product (API and console), their
defaults and bounds, and the import refusing each row outside them with a per-row problem; generation
refused for a product whose rules its codes cannot meet."""

from __future__ import annotations

import re
import uuid

from tests.integration.catalog.test_products_api import api as products_api
from tests.integration.console.conftest import browser as console_browser
from tests.integration.console.conftest import text_of
from tests.integration.console.test_catalog_pages import product_fields
from tests.integration.inventory.test_import_api import Shop, csv_bytes, upload

api = products_api  # the catalog API fixture
browser = console_browser  # the console fixture

RULES = ("code_min_length", "code_max_length", "code_charset", "pin_min_length", "pin_max_length", "pin_charset")


async def test_products_carry_code_rules_with_defaults(api):
    r = await api.create()
    assert r.status_code == 201, r.text
    p = r.json()
    assert {k: p[k] for k in RULES} == {
        "code_min_length": 4, "code_max_length": 64, "code_charset": "printable",
        "pin_min_length": 4, "pin_max_length": 64, "pin_charset": "printable",
    }
    r = await api.create(code_min_length=16, code_max_length=16, code_charset="digits", pin_min_length=6,
                         pin_max_length=8, pin_charset="alnum")
    assert r.status_code == 201, r.text
    p = r.json()
    assert (p["code_min_length"], p["code_max_length"], p["code_charset"]) == (16, 16, "digits")
    changed = await api.patch(p["id"], code_charset="crockford", pin_max_length=10)
    assert changed.status_code == 200, changed.text
    assert changed.json()["code_charset"] == "crockford" and changed.json()["pin_max_length"] == 10
    bundle_item = (await api.create(kind="code")).json()
    bundle = await api.create(kind="bundle", code_format=..., items=[{"product_id": bundle_item["id"], "quantity": 2}])
    assert bundle.status_code == 201, bundle.text
    assert all(bundle.json()[k] is None for k in RULES)


async def test_bad_code_rules_are_422_with_the_field(api):
    cases = [
        ({"code_min_length": 0}, "code_min_length"),
        ({"code_max_length": 129}, "code_max_length"),
        ({"code_min_length": 20, "code_max_length": 10}, "code_max_length"),
        ({"pin_charset": "emoji"}, "pin_charset"),
        ({"code_charset": "hex"}, "code_charset"),
    ]
    for fields, field in cases:
        r = await api.create(**fields)
        assert r.status_code == 422, (fields, r.text)
        assert field in {e["field"] for e in r.json()["errors"]}, (fields, r.json())
    item = (await api.create()).json()
    r = await api.create(kind="bundle", code_format=..., code_min_length=8,
                         items=[{"product_id": item["id"], "quantity": 2}])
    assert r.status_code == 422 and "code_min_length" in {e["field"] for e in r.json()["errors"]}
    r = await api.patch(item["id"], pin_min_length=65, pin_max_length=64)
    assert r.status_code == 422 and "pin_max_length" in {e["field"] for e in r.json()["errors"]}


async def test_import_refuses_rows_outside_the_rules(client, api, make_api_client):
    # defaults (4–64 printable): a 1-character and a 128-digit card number are refused
    default = (await api.create(code_format="number")).json()
    creds = type("Creds", (), {"headers": api.headers})()
    shop = Shop(None, creds, uuid.UUID(default["id"]))
    r = await upload(client, shop, "\n".join(["7", "9" * 128, "GOOD-CODE-0001"]).encode(), "codes.txt")
    assert r.status_code == 201, r.text
    report = r.json()["report"]
    assert (report["valid_rows"], report["invalid_rows"]) == (1, 2)
    assert report["problem_counts"] == {"too_long": 1, "too_short": 1}
    by_row = {p["row"]: p for p in report["problems"]}
    assert by_row[1]["code"] == "too_short" and by_row[1]["message_zh"] == "卡号长度为 1，至少 4 个字符"
    assert by_row[2]["code"] == "too_long" and "最多 64 个字符" in by_row[2]["message_zh"]
    assert "9" * 16 not in r.text

    # a product of 12-digit numbers and 6-digit PINs
    strict = (await api.create(code_format="number_pin", code_min_length=12, code_max_length=12,
                               code_charset="digits", pin_min_length=6, pin_max_length=6, pin_charset="digits")).json()
    rows = [
        ("1234 5678 9012", "123456"),  # valid once spaces are removed
        ("12345678901", "123456"),  # 11 digits
        ("12345678901A", "123456"),  # a letter
        ("123456789013", "12345"),  # PIN too short
        ("123456789014", "12345X"),  # PIN letter
    ]
    r = await upload(client, shop, csv_bytes(["卡号", "卡密"], rows), "strict.csv", product_id=uuid.UUID(strict["id"]))
    assert r.status_code == 201, r.text
    report = r.json()["report"]
    assert report["valid_rows"] == 1
    got = {(p["row"], p["column"], p["code"]) for p in report["problems"]}
    assert got == {(3, "number", "too_short"), (4, "number", "bad_charset"), (5, "pin", "too_short"),
                   (6, "pin", "bad_charset")}
    charset = next(p for p in report["problems"] if p["row"] == 4)
    assert charset["message_zh"] == "卡号只能包含数字 0–9"
    assert all(p.get("value") is None for p in report["problems"] if p["column"] == "pin")  # a PIN is never shown


async def test_generation_must_fit_the_product_rules(client, api):
    digits = (await api.create(code_format="number", code_charset="digits")).json()
    r = await client.post("/api/v1/code-generations", json={"product_id": digits["id"], "count": 3}, headers=api.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "product_rules_mismatch", r.text
    assert r.json()["errors"][0]["field"] == "product_id" and "数字 0–9" in r.json()["detail"]
    short = (await api.create(code_format="number", code_max_length=12)).json()
    r = await client.post("/api/v1/code-generations", json={"product_id": short["id"], "count": 3}, headers=api.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "product_rules_mismatch"
    assert r.json()["errors"][0]["field"] == "pattern"
    assert re.search(r"17", r.json()["detail"])


async def test_console_product_form_sets_the_rules(browser, make_tenant):
    tenant = await make_tenant()
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    page = await browser.get("/console/products/new")
    assert page.status_code == 200
    for name in RULES:
        assert f'name="{name}"' in page.text, name
    rules = {"code_min_length": "10", "code_max_length": "12", "code_charset": "digits",
             "pin_min_length": "6", "pin_max_length": "8", "pin_charset": "alnum"}
    sku = f"R-{uuid.uuid4().hex[:6]}"
    r = await browser.submit("/console/products/new", "/console/products", product_fields(sku, **rules))
    assert r.status_code == 303, r.text[:2000]
    detail = await browser.get(r.headers["location"])
    text = text_of(detail.text)
    assert "10–12" in text and "6–8" in text
    edit = await browser.get(r.headers["location"] + "/edit")
    assert re.search(r'name="code_min_length"[^>]*value="10"', edit.text)
    assert re.search(r'<option value="digits" selected', edit.text)
    bad = await browser.submit("/console/products/new", "/console/products",
                               product_fields(f"R-{uuid.uuid4().hex[:6]}", **{**rules, "code_min_length": "20"}))
    assert bad.status_code == 422 and "field-error" in bad.text
