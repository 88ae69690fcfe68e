"""Stored-value cards stocked over HTTP: a stored-value product is created, its cards imported (number +
PIN) or generated, each opening at the face value with an ``opening`` ledger entry, then granted and spent
through the redemption API; the ledger tells the whole story."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import httpx

from tests.integration.inventory.test_import_api import (
    Shop,
    confirm_and_wait,
    csv_bytes,
    pins,
    plain_codes,
    upload,
    wait_job,
    worker_for,
)


async def create_product(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"sku": f"SV-{secrets.token_hex(4)}", "kind": "stored_value", "name_zh": "超市储值卡 50 元",
            "face_value": 5000, **fields}
    r = await client.post("/api/v1/products", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def grant_one(client: httpx.AsyncClient, headers: dict[str, str], product_id: str) -> dict[str, Any]:
    r = await client.post(
        "/api/v1/grants",
        json={"product_id": product_id, "external_id": f"M-{secrets.token_hex(3)}", "channel": "none"},
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    return r.json()["codes"][0]


async def ledger(client: httpx.AsyncClient, headers: dict[str, str], code_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/v1/stored-value/{code_id}/ledger", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def entries(led: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(e["kind"], e["delta"], e["balance_after"]) for e in led["entries"]]


async def test_stored_value_cards_imported_granted_and_spent_over_http(client, kernel, settings, make_tenant,
                                                                      make_api_client):
    tenant = await make_tenant(plan="growth")
    creds = await make_api_client(tenant)
    h = creds.headers
    product = await create_product(client, h, code_format="number_pin")
    shop = Shop(tenant, creds, uuid.UUID(product["id"]))
    numbers, secret_pins = plain_codes(3, "SV"), pins(3)
    r = await upload(client, shop, csv_bytes(["卡号", "卡密"], list(zip(numbers, secret_pins, strict=True))), "储值卡.csv")
    assert r.status_code == 201, r.text
    assert r.json()["report"]["valid_rows"] == 3
    job = await confirm_and_wait(client, shop, settings, r.json()["id"])
    assert job["result"]["imported"] == 3

    stock = await client.get(f"/api/v1/products/{product['id']}/stock", headers=h)
    assert stock.status_code == 200 and stock.json()["levels"]["available"] == 3, stock.text

    code = await grant_one(client, h, product["id"])
    assert code["number"] in numbers
    opened = await ledger(client, h, code["code_id"])
    assert opened["initial_balance"] == 5000 and opened["balance"] == 5000
    assert entries(opened) == [("opening", 5000, 5000)]  # on record before the first spend

    body = {"code": code["number"], "pin": code["pin"], "store": "门店 1"}
    check = await client.post("/api/v1/redemptions/validate", json={**body, "amount": 100}, headers=h)
    assert check.status_code == 200 and check.json()["balance"] == 5000, check.text
    spend = await client.post("/api/v1/redemptions", json={**body, "amount": 1200}, headers=h)
    assert spend.status_code == 201 and spend.json()["balance_after"] == 3800, spend.text
    too_much = await client.post("/api/v1/redemptions", json={**body, "amount": 3801}, headers=h)
    assert too_much.status_code == 409 and too_much.json()["code"] == "insufficient_balance"
    rest = await client.post("/api/v1/redemptions", json={**body, "amount": 3800}, headers=h)
    assert rest.status_code == 201 and rest.json()["balance_after"] == 0
    assert entries(await ledger(client, h, code["code_id"])) == [
        ("opening", 5000, 5000), ("redeem", -1200, 3800), ("redeem", -3800, 0),
    ]


async def test_stored_value_cards_generated_open_at_face_value(client, kernel, settings, make_tenant, make_api_client):
    tenant = await make_tenant(plan="growth")
    creds = await make_api_client(tenant)
    h = creds.headers
    product = await create_product(client, h, code_format="number", face_value=10000)
    shop = Shop(tenant, creds, uuid.UUID(product["id"]))
    async with worker_for(settings):
        r = await client.post("/api/v1/code-generations", json={"product_id": product["id"], "count": 5}, headers=h)
        assert r.status_code == 202, r.text
        job = await wait_job(client, shop, r.json()["job_id"])
    assert job["status"] == "succeeded" and job["result"]["imported"] == 5, job
    code = await grant_one(client, h, product["id"])
    assert entries(await ledger(client, h, code["code_id"])) == [("opening", 10000, 10000)]
    spend = await client.post("/api/v1/redemptions", json={"code": code["number"], "amount": 2550}, headers=h)
    assert spend.status_code == 201 and spend.json()["balance_after"] == 7450, spend.text
    led = await ledger(client, h, code["code_id"])
    assert led["balance"] == 7450 and entries(led)[-1] == ("redeem", -2550, 7450)
