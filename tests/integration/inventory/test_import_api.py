"""Code imports through the API: every file form, the report, whole-file errors, confirm modes, generation,
isolation, and one import end to end (API → outbox → relay → worker → job progress → batch)."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import io
import secrets
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import openpyxl
import pytest
from sqlalchemy import func, select

from core.catalog.models import Product
from core.db.context import tenant_context
from core.inventory import codegen
from core.inventory.models import Batch, Code, CodeImport
from core.inventory.vault import MAX_CODE_LENGTH, unseal

PROBLEM = "application/problem+json"


# ------------------------------------------------------------------------------------------ helpers (shared)


def plain_codes(n: int, prefix: str = "PLN") -> list[str]:
    return [f"{prefix}{secrets.token_hex(7).upper()}" for _ in range(n)]


def pins(n: int) -> list[str]:
    return [f"pin{secrets.token_hex(6)}" for _ in range(n)]


def csv_bytes(header: list[str], rows: list[tuple[Any, ...]], encoding: str = "utf-8", newline: str = "\r\n") -> bytes:
    lines = [",".join(header)] + [",".join("" if v is None else str(v) for v in r) for r in rows]
    return (newline.join(lines) + newline).encode(encoding)


def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    wb = openpyxl.Workbook()
    for row in rows:
        wb.active.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


async def new_product(kernel: Any, tenant_id: uuid.UUID, **fields: Any) -> uuid.UUID:
    values = {"sku": f"SKU-{secrets.token_hex(4)}", "kind": "code", "code_format": "number_pin", "name_zh": "视频月卡",
              "name_en": "Video monthly", **fields}
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            product = Product(**values)
            db.add(product)
            await db.flush()
            return product.id


@dataclass
class Shop:
    tenant: Any
    creds: Any
    product_id: uuid.UUID


@pytest.fixture
async def shop(kernel, make_tenant, make_api_client) -> Shop:
    tenant = await make_tenant(plan="growth")
    creds = await make_api_client(tenant)
    return Shop(tenant, creds, await new_product(kernel, tenant.id))


async def upload(
    client: httpx.AsyncClient, shop: Shop, data: bytes, filename: str, product_id: uuid.UUID | None = None, **fields: Any
) -> httpx.Response:
    form = {"product_id": str(product_id or shop.product_id), **{k: str(v) for k, v in fields.items()}}
    return await client.post(
        "/api/v1/code-imports",
        headers=shop.creds.headers,
        files={"file": (filename, data, "application/octet-stream")},
        data=form,
    )


@contextlib.asynccontextmanager
async def worker_for(settings: Any) -> AsyncIterator[None]:
    """Service mode: a `kaquan worker` in a thread consumes what the app's relay sends to Redis.
    Embedded mode: the app's in-process worker already does it."""
    if not settings.redis_url:
        yield
        return
    from core.jobs.worker import run_worker

    stop = threading.Event()
    thread = threading.Thread(target=run_worker, args=(settings,), kwargs={"threads": 2, "stop": stop}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 60)


async def wait_job(client: httpx.AsyncClient, shop: Shop, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(1200):  # a condition wait (up to two minutes), not a timing assertion
        r = await client.get(f"/api/v1/jobs/{job_id}", headers=shop.creds.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] in ("succeeded", "failed"):
            break
        await asyncio.sleep(0.1)
    return body


async def confirm_and_wait(client, shop: Shop, settings, import_id: str, mode: str = "valid_only") -> dict[str, Any]:
    async with worker_for(settings):
        r = await client.post(f"/api/v1/code-imports/{import_id}/confirm", headers=shop.creds.headers, json={"mode": mode})
        assert r.status_code == 202, r.text
        job = await wait_job(client, shop, r.json()["job_id"])
    assert job["status"] == "succeeded", job
    return job


async def count(kernel, tenant_id: uuid.UUID, model: Any, *where: Any) -> int:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return int(await db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


# ------------------------------------------------------------------------------------------ end to end


async def test_gbk_csv_with_chinese_headers_end_to_end(client, kernel, settings, shop):
    numbers, secret_pins = plain_codes(30), pins(30)
    rows = [(n, p, "2031-12-31") for n, p in zip(numbers, secret_pins, strict=True)]
    data = csv_bytes(["卡号", "卡密", "有效期"], rows, encoding="gbk")
    r = await upload(client, shop, data, "供应商卡密.csv", supplier="某供应商", unit_cost=850, purchase_ref="PO-1",
                     notes="十月采购")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "validated" and body["encoding"] == "gb18030" and body["file_format"] == "csv"
    report = body["report"]
    assert (report["total_rows"], report["valid_rows"], report["invalid_rows"]) == (30, 30, 0)
    assert report["columns"] == {"number": "卡号", "pin": "卡密", "expires_at": "有效期"}
    assert body["batch_fields"]["unit_cost"] == 850 and body["batch_fields"]["currency"] == "CNY"
    for n in numbers + secret_pins:
        assert n not in r.text

    job = await confirm_and_wait(client, shop, settings, body["id"])
    assert job["kind"] == "codes.import" and job["done"] == job["total"] == 30 and job["result"]["imported"] == 30

    r = await client.get(f"/api/v1/code-imports/{body['id']}", headers=shop.creds.headers)
    done = r.json()
    assert done["status"] == "imported" and done["batch_id"] == job["result"]["batch_id"]
    batch_id = uuid.UUID(done["batch_id"])
    with tenant_context(shop.tenant.id):
        async with kernel.db.transaction() as db:
            batch = (await db.execute(select(Batch).where(Batch.id == batch_id))).scalar_one()
            stored = (await db.execute(select(Code).where(Code.batch_id == batch_id))).scalars().all()
            cipher = await kernel.keys.cipher(db)
            imp = (await db.execute(select(CodeImport).where(CodeImport.id == uuid.UUID(body["id"])))).scalar_one()
    assert batch.ref.startswith("B-") and batch.code_count == 30 and batch.unit_cost == 850
    assert batch.supplier == "某供应商" and batch.purchase_ref == "PO-1" and batch.source == "import"
    assert imp.staged is None  # the staged copy is dropped once the codes are stock
    opened = sorted(unseal(cipher, c.digest, c.secret) for c in stored)
    assert opened == sorted(zip(numbers, secret_pins, strict=True))
    assert {c.state for c in stored} == {"available"}
    assert all(c.expires_at is not None and c.expires_at.year == 2031 for c in stored)
    assert {c.last4 for c in stored} == {n[-4:] for n in numbers}


# ------------------------------------------------------------------------------------------ file forms


def _forms(numbers: list[str], secret_pins: list[str]) -> dict[str, tuple[str, bytes]]:
    pairs = list(zip(numbers, secret_pins, strict=True))
    return {
        "bom_csv": ("codes.csv", codecs.BOM_UTF8 + csv_bytes(["card number", "password"], pairs)),
        "xlsx": ("codes.xlsx", xlsx_bytes([["卡号", "密码", "过期时间"], *[[n, p, "2031-01-01"] for n, p in pairs]])),
        "txt_dashes": ("codes.txt", "\n".join(f"{n}----{p}" for n, p in pairs).encode()),
        "txt_comma": ("codes.txt", "\r\n".join(f"{n},{p}" for n, p in pairs).encode()),
        "txt_space": ("codes.txt", "\n".join(f"{n} {p}" for n, p in pairs).encode()),
        "txt_tab": ("codes.txt", "\n".join(f"{n}\t{p}" for n, p in pairs).encode()),
        "gb18030_txt": ("codes.txt", ("卡号----卡密\n" + "\n".join(f"{n}----{p}" for n, p in pairs)).encode("gb18030")),
    }


@pytest.mark.parametrize(
    "form", ["bom_csv", "xlsx", "txt_dashes", "txt_comma", "txt_space", "txt_tab", "gb18030_txt"]
)
async def test_every_file_form_gives_the_right_report(client, shop, form):
    numbers, secret_pins = plain_codes(5), pins(5)
    filename, data = _forms(numbers, secret_pins)[form]
    r = await upload(client, shop, data, filename)
    assert r.status_code == 201, r.text
    report = r.json()["report"]
    assert (report["total_rows"], report["valid_rows"]) == (5, 5), report
    assert report["columns"]["number"] and report["columns"]["pin"]
    for secret in numbers + secret_pins:
        assert secret not in r.text


async def test_one_code_per_line_raw_body_and_pasted_text(client, kernel, shop):
    number_only = await new_product(kernel, shop.tenant.id, code_format="number")
    numbers = plain_codes(4)
    r = await client.post(
        "/api/v1/code-imports",
        params={"product_id": str(number_only), "filename": "codes.txt", "unit_cost": "100"},
        content="\r\n".join(numbers).encode(),
        headers={**shop.creds.headers, "Content-Type": "text/plain"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["report"]["valid_rows"] == 4 and r.json()["batch_fields"]["unit_cost"] == 100
    pasted = plain_codes(3)
    r = await client.post(
        "/api/v1/code-imports",
        json={"product_id": str(number_only), "text": "\n".join(pasted) + "\n\n", "supplier": "粘贴"},
        headers=shop.creds.headers,
    )
    assert r.status_code == 201, r.text
    assert r.json()["file_format"] == "paste" and r.json()["report"]["valid_rows"] == 3
    r = await client.post(
        "/api/v1/code-imports",
        files={"x": ("a", b"")},
        data={"product_id": str(number_only), "text": "\n".join(plain_codes(2))},
        headers=shop.creds.headers,
    )
    assert r.status_code == 201, r.text and r.json()["report"]["valid_rows"] == 2


async def test_explicit_column_mapping(client, shop):
    numbers, secret_pins = plain_codes(2), pins(2)
    data = csv_bytes(["序号", "串号", "口令"], [(i, n, p) for i, (n, p) in enumerate(zip(numbers, secret_pins, strict=True))])
    r = await upload(client, shop, data, "codes.csv", mapping=msgspec.json.encode({"number": "串号", "pin": "口令"}).decode())
    assert r.status_code == 201, r.text
    assert r.json()["report"]["columns"] == {"number": "串号", "pin": "口令", "expires_at": None}
    assert r.json()["report"]["valid_rows"] == 2


# ------------------------------------------------------------------------------------------ the report


async def test_file_with_every_kind_of_bad_row(client, kernel, settings, shop):
    held = plain_codes(1)[0]
    r = await upload(client, shop, csv_bytes(["卡号", "卡密"], [(held, pins(1)[0])]), "first.csv")
    await confirm_and_wait(client, shop, settings, r.json()["id"])

    good, dup = plain_codes(2)
    rows = [
        (good, "pinA", "2031-01-01"),  # row 2: valid
        ("", "pinB", ""),  # 3: empty
        ("BAD\x07CODE01", "pinC", ""),  # 4: control character
        ("BAD\u202eCODE02", "pinD", ""),  # 5: invisible control character
        ("L" * (MAX_CODE_LENGTH + 1), "pinE", ""),  # 6: too long
        (dup, "pinF", "2031-02-30"),  # 7: malformed date
        (plain_codes(1)[0], "pinG", "2020-01-01"),  # 8: already expired
        (good, "pinH", ""),  # 9: duplicate inside the file
        (held, "pinI", ""),  # 10: duplicate of a code already held
        (plain_codes(1)[0], "", ""),  # 11: PIN missing
    ]
    r = await upload(client, shop, csv_bytes(["卡号", "卡密", "有效期"], rows), "bad.csv")
    assert r.status_code == 201, r.text
    report = r.json()["report"]
    assert (report["total_rows"], report["valid_rows"], report["invalid_rows"]) == (10, 1, 9)
    assert report["problem_counts"] == {
        "bad_characters": 2, "bad_date": 1, "duplicate_existing": 1, "duplicate_in_file": 1, "empty": 1,
        "expired": 1, "pin_missing": 1, "too_long": 1,
    }
    listed = {(p["row"], p["code"]) for p in report["problems"]}
    assert listed == {(3, "empty"), (4, "bad_characters"), (5, "bad_characters"), (6, "too_long"), (7, "bad_date"),
                      (8, "expired"), (9, "duplicate_in_file"), (10, "duplicate_existing"), (11, "pin_missing")}
    for p in report["problems"]:
        assert p["message_en"] and p["message_zh"] and p["column"] in ("number", "pin", "expires_at")
    for secret in (good, held, dup, "BAD\x07CODE01"):
        assert secret not in r.text
    # a number-only product refuses PINs
    number_only = await new_product(kernel, shop.tenant.id, code_format="number")
    r = await upload(client, shop, csv_bytes(["code", "pin"], [(plain_codes(1)[0], "x")]), "p.csv", product_id=number_only)
    assert r.json()["report"]["problem_counts"] == {"pin_unexpected": 1}


async def test_whole_file_errors_are_clear_problems_and_store_nothing(client, kernel, shop, monkeypatch):
    before = await count(kernel, shop.tenant.id, CodeImport)
    cases = [
        (b"", "empty.csv", 422, "import_empty"),
        ("卡号,卡密\r\n".encode("gbk"), "header-only.csv", 422, "import_empty"),
        (b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(500), "photo.csv", 422, "import_binary"),
        (secrets.token_bytes(2000).replace(b"\n", b"") + b"\x00", "random.csv", 422, "import_binary"),
        (b"x", "codes.pdf", 422, "import_unknown_format"),
        (b"not really a workbook", "codes.xlsx", 422, "import_bad_spreadsheet"),
        (b"code\n" + bytes(range(128, 256)) * 4, "garbled.txt", 422, "import_undecodable"),
    ]
    for data, name, status, code in cases:
        r = await upload(client, shop, data, name)
        assert (r.status_code, r.headers["content-type"]) == (status, PROBLEM), (name, r.text)
        assert r.json()["code"] == code, (name, r.text)
        assert r.json()["detail"]
    small = msgspec.structs.replace(kernel.settings, max_import_bytes=1000)
    monkeypatch.setattr(kernel, "settings", small)
    big = csv_bytes(["卡号", "卡密"], list(zip(plain_codes(100), pins(100), strict=True)))
    r = await upload(client, shop, big, "big.csv")  # declared length over the limit: refused before reading
    assert (r.status_code, r.json()["code"]) == (413, "import_too_large"), r.text
    r = await upload(client, shop, big[:1200], "just-over.csv")  # within the multipart slack, file over the limit
    assert (r.status_code, r.json()["code"]) == (413, "import_too_large"), r.text
    r = await client.post(
        "/api/v1/code-imports", params={"product_id": str(shop.product_id), "filename": "big.csv"},
        content=big, headers={**shop.creds.headers, "Content-Type": "text/csv"},
    )
    assert (r.status_code, r.json()["code"]) == (413, "import_too_large"), r.text
    assert await count(kernel, shop.tenant.id, CodeImport) == before
    assert await count(kernel, shop.tenant.id, Batch) == 0


async def test_bad_fields_are_422_never_500(client, kernel, shop):
    data = csv_bytes(["卡号", "卡密"], [(plain_codes(1)[0], "pin1")])
    bundle = await new_product(kernel, shop.tenant.id, kind="bundle")
    cases = [
        ({"unit_cost": "-5"}, "unit_cost"),
        ({"unit_cost": "abc"}, "unit_cost"),
        ({"currency": "yuan"}, "currency"),
        ({"expires_at": "2020-01-01"}, "expires_at"),
        ({"expires_at": "next week"}, "expires_at"),
        ({"mapping": "{not json"}, "mapping"),
        ({"mapping": '{"number": "nope"}'}, None),
    ]
    for fields, field in cases:
        r = await upload(client, shop, data, "a.csv", **fields)
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, (fields, r.text)
        if field:
            assert r.json()["errors"][0]["field"] == field, r.text
    r = await upload(client, shop, data, "a.csv", product_id=bundle)
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "product_not_codes"
    r = await upload(client, shop, data, "a.csv", product_id=uuid.uuid4())
    assert r.status_code == 404 and r.json()["code"] == "product_not_found"
    r = await client.post("/api/v1/code-imports", json={"text": "x"}, headers=shop.creds.headers)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    r = await client.post("/api/v1/code-imports", content=b"{oops", headers={**shop.creds.headers,
                                                                            "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "malformed_json"
    r = await client.post(f"/api/v1/code-imports/{uuid.uuid4()}/confirm", json={"mode": "everything"},
                          headers=shop.creds.headers)
    assert r.status_code in (400, 422) and r.headers["content-type"] == PROBLEM


# ------------------------------------------------------------------------------------------ confirm modes


async def test_all_or_nothing_with_one_bad_row_imports_nothing(client, kernel, settings, shop):
    rows = [(n, p) for n, p in zip(plain_codes(5), pins(5), strict=True)] + [("BAD\x07CODE", "pin1")]
    r = await upload(client, shop, csv_bytes(["卡号", "卡密"], rows), "mixed.csv")
    import_id = r.json()["id"]
    r = await client.post(f"/api/v1/code-imports/{import_id}/confirm", headers=shop.creds.headers,
                          json={"mode": "all_or_nothing"})
    assert r.status_code == 422 and r.json()["code"] == "import_has_problems", r.text
    assert await count(kernel, shop.tenant.id, Code, Code.product_id == shop.product_id) == 0
    assert await count(kernel, shop.tenant.id, Batch) == 0
    r = await client.get(f"/api/v1/code-imports/{import_id}", headers=shop.creds.headers)
    assert r.json()["status"] == "validated"
    job = await confirm_and_wait(client, shop, settings, import_id, "valid_only")
    assert job["result"]["imported"] == 5
    r = await client.post(f"/api/v1/code-imports/{import_id}/confirm", headers=shop.creds.headers, json={})
    assert r.status_code == 409 and r.json()["code"] == "import_already_done"


async def test_generation_of_10000_codes(client, kernel, settings, shop):
    coupon = await new_product(kernel, shop.tenant.id, code_format="number", name_zh="满减券")
    async with worker_for(settings):
        r = await client.post(
            "/api/v1/code-generations",
            json={"product_id": str(coupon), "count": 10_000, "prefix": "KQ-", "unit_cost": 0, "expires_at": "2032-06-30"},
            headers=shop.creds.headers,
        )
        assert r.status_code == 202, r.text
        job = await wait_job(client, shop, r.json()["job_id"])
    assert job["status"] == "succeeded" and job["kind"] == "codes.generate" and job["done"] == 10_000, job
    r = await client.get(f"/api/v1/code-imports/{r.json()['import_id']}", headers=shop.creds.headers)
    assert r.json()["status"] == "imported" and r.json()["source"] == "generated"
    with tenant_context(shop.tenant.id):
        async with kernel.db.transaction() as db:
            cipher = await kernel.keys.cipher(db)
            rows = (await db.execute(select(Code).where(Code.product_id == coupon))).scalars().all()
            batch = (await db.execute(select(Batch).where(Batch.product_id == coupon))).scalar_one()
    numbers = [unseal(cipher, c.digest, c.secret)[0] for c in rows]
    assert len(numbers) == len(set(numbers)) == 10_000 and batch.source == "generated" and batch.code_count == 10_000
    assert all(n.startswith("KQ-") and codegen.is_valid(n) for n in numbers)
    assert len({c.digest for c in rows}) == 10_000


async def test_generation_rejects_bad_requests(client, kernel, shop):
    coupon = await new_product(kernel, shop.tenant.id, code_format="number")
    cases = [
        ({"product_id": str(coupon), "count": 0}, 422),
        ({"product_id": str(coupon), "count": 1_000_001}, 422),
        ({"product_id": str(coupon), "count": 5, "pattern": "####"}, 422),
        ({"product_id": str(coupon), "count": 5, "prefix": "I!"}, 422),
        ({"product_id": str(shop.product_id), "count": 5}, 422),  # number+PIN product: generated codes have no PIN
        ({"product_id": str(uuid.uuid4()), "count": 5}, 404),
    ]
    for body, status in cases:
        r = await client.post("/api/v1/code-generations", json=body, headers=shop.creds.headers)
        assert r.status_code == status and r.headers["content-type"] == PROBLEM, (body, r.text)


# ------------------------------------------------------------------------------------------ isolation


async def test_tenant_cannot_see_or_confirm_another_tenants_import(client, kernel, make_tenant, make_api_client, shop):
    r = await upload(client, shop, csv_bytes(["卡号", "卡密"], [(plain_codes(1)[0], "pin1")]), "a.csv")
    import_id = r.json()["id"]
    other = await make_tenant()
    creds = await make_api_client(other)
    r = await client.get(f"/api/v1/code-imports/{import_id}", headers=creds.headers)
    assert r.status_code == 404 and r.json()["code"] == "import_not_found"
    r = await client.post(f"/api/v1/code-imports/{import_id}/confirm", headers=creds.headers, json={"mode": "valid_only"})
    assert r.status_code == 404
    r = await client.post(
        "/api/v1/code-imports", headers=creds.headers, data={"product_id": str(shop.product_id)},
        files={"file": ("a.csv", b"code\nAAAA1111\n")},
    )
    assert r.status_code == 404 and r.json()["code"] == "product_not_found"
    r = await client.post("/api/v1/code-generations", headers=creds.headers,
                          json={"product_id": str(shop.product_id), "count": 1})
    assert r.status_code == 404
    r = await client.get(f"/api/v1/code-imports/{import_id}", headers=shop.creds.headers)
    assert r.json()["status"] == "validated"


async def test_scopes_guard_the_routes(client, make_tenant, make_api_client, shop):
    reader = await make_api_client(shop.tenant, ["inventory:read"])
    r = await client.post("/api/v1/code-imports", headers=reader.headers,
                          data={"product_id": str(shop.product_id)}, files={"file": ("a.csv", b"code\nAAAA1111\n")})
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"
    r = await client.get(f"/api/v1/code-imports/{uuid.uuid4()}", headers=reader.headers)
    assert r.status_code == 404
