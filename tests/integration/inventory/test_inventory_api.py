"""Inventory API: stock by state and batch at cost, batches, masked codes, allocations and reservations,
void, audited reveal and export, stock alerts."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid

import pytest
from sqlalchemy import select, update

from core.db.context import tenant_context
from core.inventory.models import Code
from core.inventory.stock import evaluate_alerts
from tests.integration.inventory.stocking import stock_product

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
async def shop(client, kernel, make_tenant, make_api_client):
    tenant = await make_tenant(plan="growth")  # room for several API clients
    creds = await make_api_client(tenant)

    class Shop:
        id = tenant.id
        headers = creds.headers

        async def get(self, path, **params):
            return await client.get(path, params=params, headers=creds.headers)

        async def post(self, path, json=None, headers=None):
            return await client.post(path, json=json, headers={**creds.headers, **(headers or {})})

        async def stock(self, count, **kw):
            return await stock_product(kernel, tenant.id, count, **kw)

        async def run(self, fn):
            with tenant_context(tenant.id):
                async with kernel.db.transaction() as db:
                    return await fn(db)

    return Shop()


async def _set_state(shop, code_ids, state):
    async def go(db):
        await db.execute(update(Code).where(Code.id.in_(code_ids)).values(state=state))
    await shop.run(go)


async def test_stock_by_state_and_per_batch_with_value_at_cost(shop):
    b1 = await shop.stock(5, unit_cost=500)
    b2 = await shop.stock(3, unit_cost=800, product_id=b1.product_id,
                          expiries=[NOW - dt.timedelta(hours=1), NOW + dt.timedelta(days=10),
                                    NOW + dt.timedelta(days=20)])
    issued = await shop.post("/api/v1/allocations", {"product_id": str(b1.product_id), "quantity": 1,
                                                     "purpose": "order 1"})
    assert issued.status_code == 201 and issued.json()["codes"][0]["id"] == str(b2.code_ids[1])  # FEFO
    held = await shop.post("/api/v1/allocations", {"product_id": str(b1.product_id), "quantity": 1,
                                                   "purpose": "cart", "reserve_seconds": 600})
    assert held.json()["codes"][0]["id"] == str(b2.code_ids[2])
    r = await shop.post("/api/v1/codes/void", {"code_ids": [str(b1.code_ids[0])], "reason": "supplier recall"})
    assert r.status_code == 200 and r.json() == {"voided": 1}
    await _set_state(shop, [b1.code_ids[1]], "redeemed")

    r = await shop.get(f"/api/v1/products/{b1.product_id}/stock")
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["levels"] == {"available": 3, "reserved": 1, "issued": 1, "redeemed": 1, "expired": 1, "voided": 1,
                           "total": 8, "available_value": 1500, "currency": "CNY"}
    per = {b["batch_id"]: b for b in s["batches"]}
    assert per[str(b1.batch_id)]["levels"]["available"] == 3
    assert per[str(b1.batch_id)]["levels"]["available_value"] == 1500
    assert per[str(b1.batch_id)]["unit_cost"] == 500
    assert per[str(b2.batch_id)]["levels"] == {"available": 0, "reserved": 1, "issued": 1, "redeemed": 0,
                                                     "expired": 1, "voided": 0, "total": 3, "available_value": 0,
                                                     "currency": "CNY"}
    r = await shop.get(f"/api/v1/products/{uuid.uuid4()}/stock")
    assert r.status_code == 404 and r.json()["code"] == "product_not_found"


async def test_batches_list_detail_and_cursor(shop):
    a = await shop.stock(2, unit_cost=100)
    more = [await shop.stock(1, product_id=a.product_id) for _ in range(2)]
    other = await shop.stock(1)
    r = await shop.get("/api/v1/batches", product_id=str(a.product_id))
    ids = [b["id"] for b in r.json()["items"]]
    assert ids == [str(more[1].batch_id), str(more[0].batch_id), str(a.batch_id)]  # newest first
    everything = {b["id"] for b in (await shop.get("/api/v1/batches")).json()["items"]}
    assert str(other.batch_id) in everything and len(everything) == 4
    seen, cursor = [], None
    while True:
        page = (await shop.get("/api/v1/batches", limit=3, **({"cursor": cursor} if cursor else {}))).json()
        seen += [b["id"] for b in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert len(seen) == 4 and set(seen) == everything
    d = (await shop.get(f"/api/v1/batches/{a.batch_id}")).json()
    assert d["batch"]["ref"].startswith("B-") and d["batch"]["code_count"] == 2 and d["batch"]["unit_cost"] == 100
    assert d["levels"]["available"] == 2 and d["levels"]["available_value"] == 200
    assert (await shop.get(f"/api/v1/batches/{uuid.uuid4()}")).status_code == 404
    assert (await shop.get("/api/v1/batches", product_id=str(uuid.uuid4()))).status_code == 404


async def test_codes_are_listed_masked_only(shop):
    s = await shop.stock(5)
    await _set_state(shop, s.code_ids[:2], "redeemed")
    r = await shop.get("/api/v1/codes", batch_id=str(s.batch_id))
    assert r.status_code == 200
    items = r.json()["items"]
    assert [i["id"] for i in items] == [str(c) for c in s.code_ids]
    for item, number in zip(items, s.numbers, strict=True):
        assert item["masked"] == "•••• " + number[-4:] and item["has_pin"] is True
        assert set(item) == {"id", "product_id", "batch_id", "masked", "has_pin", "state", "expires_at", "uses_left"}
    assert not any(n in r.text for n in s.numbers)
    redeemed = (await shop.get("/api/v1/codes", batch_id=str(s.batch_id), state="redeemed")).json()["items"]
    assert {i["id"] for i in redeemed} == {str(c) for c in s.code_ids[:2]}
    page = (await shop.get("/api/v1/codes", product_id=str(s.product_id), limit=3)).json()
    assert len(page["items"]) == 3 and page["next_cursor"] == str(s.code_ids[2])
    rest = (await shop.get("/api/v1/codes", product_id=str(s.product_id), cursor=page["next_cursor"])).json()
    assert [i["id"] for i in rest["items"]] == [str(c) for c in s.code_ids[3:]] and rest["next_cursor"] is None
    r = await shop.get("/api/v1/codes", state="lost")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "state"
    assert (await shop.get("/api/v1/codes", batch_id=str(uuid.uuid4()))).status_code == 404


async def test_allocate_reserve_confirm_release(shop):
    s = await shop.stock(6)
    pid = str(s.product_id)
    r = await shop.post("/api/v1/allocations", {"product_id": pid, "quantity": 2, "purpose": "order A-1"})
    assert r.status_code == 201, r.text
    a = r.json()
    assert a["state"] == "issued" and a["reservation_id"] is None and len(a["codes"]) == 2
    assert all(c["masked"].startswith("•••• ") for c in a["codes"]) and not any(n in r.text for n in s.numbers)

    held = (await shop.post("/api/v1/allocations", {"product_id": pid, "quantity": 2, "purpose": "cart",
                                                     "reserve_seconds": 300})).json()
    assert held["state"] == "reserved" and held["reservation_id"] and held["reserved_until"]
    r = await shop.post(f"/api/v1/reservations/{held['reservation_id']}/confirm")
    assert r.status_code == 200 and r.json()["state"] == "issued"
    assert {c["id"] for c in r.json()["codes"]} == {c["id"] for c in held["codes"]}
    r = await shop.post(f"/api/v1/reservations/{held['reservation_id']}/confirm")
    assert r.status_code == 409 and r.json()["code"] == "reservation_closed"

    other = (await shop.post("/api/v1/allocations", {"product_id": pid, "quantity": 2, "purpose": "cart 2",
                                                      "reserve_seconds": 300})).json()
    r = await shop.post(f"/api/v1/reservations/{other['reservation_id']}/release", {"reason": "cart abandoned"})
    assert r.status_code == 200 and r.json() == {"reservation_id": other["reservation_id"], "released": 2}
    assert (await shop.get(f"/api/v1/products/{pid}/stock")).json()["levels"]["available"] == 2

    r = await shop.post("/api/v1/allocations", {"product_id": pid, "quantity": 3, "purpose": "too many"})
    assert r.status_code == 409 and r.json()["code"] == "out_of_stock" and r.json()["available"] == 2
    assert (await shop.get(f"/api/v1/products/{pid}/stock")).json()["levels"]["available"] == 2  # nothing taken
    assert (await shop.post(f"/api/v1/reservations/{uuid.uuid4()}/release")).status_code == 404
    for bad in ({"product_id": pid, "quantity": 0, "purpose": "x"},
                {"product_id": pid, "quantity": 1, "purpose": ""},
                {"product_id": pid, "quantity": 1, "purpose": "x", "reserve_seconds": 0},
                {"product_id": pid, "quantity": 1}):
        assert (await shop.post("/api/v1/allocations", bad)).status_code == 422, bad
    r = await shop.post("/api/v1/allocations", {"product_id": str(uuid.uuid4()), "quantity": 1, "purpose": "x"})
    assert r.status_code == 404


async def test_an_allocation_replayed_with_the_same_idempotency_key_takes_stock_once(shop):
    s = await shop.stock(3)
    req = {"product_id": str(s.product_id), "quantity": 2, "purpose": "order K-9"}
    first = await shop.post("/api/v1/allocations", req, headers={"Idempotency-Key": "alloc-K-9"})
    again = await shop.post("/api/v1/allocations", req, headers={"Idempotency-Key": "alloc-K-9"})
    assert first.status_code == again.status_code == 201
    assert again.content == first.content and again.headers.get("idempotent-replayed") == "true"
    assert (await shop.get(f"/api/v1/products/{s.product_id}/stock")).json()["levels"]["available"] == 1


async def test_reveal_returns_plaintext_uncached_and_is_audited(shop):
    s = await shop.stock(2)
    r = await shop.post(f"/api/v1/codes/{s.code_ids[0]}/reveal", {"reason": "customer says code fails"})
    assert r.status_code == 200, r.text
    assert r.json()["number"] == s.numbers[0] and r.json()["pin"].startswith("P")
    assert r.headers["cache-control"] == "no-store"
    events = (await shop.get("/api/v1/audit/events", limit=20)).json()["items"]
    revealed = [e for e in events if e["action"] == "code.revealed"]
    assert revealed[0]["object_id"] == str(s.code_ids[0])
    assert revealed[0]["data"] == {"reason": "customer says code fails", "last4": s.numbers[0][-4:]}
    assert s.numbers[0] not in str(events)

    r = await shop.post(f"/api/v1/codes/{s.code_ids[0]}/reveal", {"reason": ""})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    assert (await shop.post(f"/api/v1/codes/{s.code_ids[0]}/reveal", {})).status_code == 422
    r = await shop.post(f"/api/v1/codes/{s.code_ids[1]}/reveal", {"reason": "store a copy"},
                        headers={"Idempotency-Key": "reveal-1"})
    assert r.status_code == 400 and r.json()["code"] == "idempotency_not_supported"
    r = await shop.post(f"/api/v1/codes/{uuid.uuid4()}/reveal", {"reason": "does not exist"})
    assert r.status_code == 404 and r.json()["code"] == "code_not_found"


async def test_reveal_and_export_need_the_codes_reveal_scope(shop, client, make_api_client):
    s = await shop.stock(1)

    class T:
        id = shop.id

    for scopes in (["inventory:read", "inventory:write"], ["catalog:read"]):
        weak = await make_api_client(T, scopes)
        r = await client.post(f"/api/v1/codes/{s.code_ids[0]}/reveal", json={"reason": "just looking"},
                              headers=weak.headers)
        assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"
        r = await client.post(f"/api/v1/batches/{s.batch_id}/export", json={"reason": "just looking"},
                              headers=weak.headers)
        assert r.status_code == 403
    assert "code.revealed" not in str((await shop.get("/api/v1/audit/events", limit=50)).json())


async def test_export_csv_contents_headers_and_audit(shop):
    s = await shop.stock(4, expiries=[NOW + dt.timedelta(days=9)] * 4)
    await _set_state(shop, [s.code_ids[3]], "redeemed")
    r = await shop.post(f"/api/v1/batches/{s.batch_id}/export", {"reason": "move to new system"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-disposition"].startswith("attachment; filename=\"B-")
    assert r.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == ["card_number", "pin", "state", "expires_at"]
    assert sorted(row[0] for row in rows[1:]) == sorted(s.numbers[:3])
    assert all(row[1].startswith("P") and row[2] == "available" and row[3] for row in rows[1:])
    r = await shop.post(f"/api/v1/batches/{s.batch_id}/export", {"reason": "all of it",
                                                                  "states": ["available", "redeemed"]})
    assert len(r.content.decode("utf-8-sig").splitlines()) == 5
    events = (await shop.get("/api/v1/audit/events", limit=20)).json()["items"]
    exports = [e for e in events if e["action"] == "codes.exported"]
    assert [(e["data"]["reason"], e["data"]["count"]) for e in exports] == [("all of it", 4),
                                                                           ("move to new system", 3)]
    r = await shop.post(f"/api/v1/batches/{s.batch_id}/export", {"reason": "odd", "states": ["gone"]})
    assert r.status_code == 422
    r = await shop.post(f"/api/v1/batches/{s.batch_id}/export", {"reason": "x"})
    assert r.status_code == 422
    assert (await shop.post(f"/api/v1/batches/{uuid.uuid4()}/export", {"reason": "nothing"})).status_code == 404
    r = await shop.post(f"/api/v1/batches/{s.batch_id}/export", {"reason": "keep it"},
                        headers={"Idempotency-Key": "export-1"})
    assert r.status_code == 400


async def test_void_through_the_api(shop):
    s = await shop.stock(4, unit_cost=300)
    r = await shop.post("/api/v1/codes/void", {"code_ids": [str(s.code_ids[0])], "reason": ""})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    assert (await shop.post("/api/v1/codes/void", {"code_ids": [str(s.code_ids[0])]})).status_code == 422
    r = await shop.post("/api/v1/codes/void", {"code_ids": [], "reason": "found invalid"})
    assert r.status_code == 422
    await _set_state(shop, [s.code_ids[1]], "redeemed")
    r = await shop.post("/api/v1/codes/void", {"code_ids": [str(s.code_ids[0]), str(s.code_ids[1])],
                                               "reason": "supplier recall"})
    assert r.status_code == 409 and r.json()["code"] == "code_not_voidable"
    r = await shop.post("/api/v1/codes/void", {"code_ids": [str(s.code_ids[0]), str(uuid.uuid4())],
                                               "reason": "supplier recall"})
    assert r.status_code == 404
    r = await shop.post("/api/v1/codes/void", {"code_ids": [str(c) for c in (s.code_ids[0], s.code_ids[2])],
                                               "reason": "supplier recall"})
    assert r.status_code == 200 and r.json() == {"voided": 2}
    voided = (await shop.get("/api/v1/codes", batch_id=str(s.batch_id), state="voided")).json()["items"]
    assert {v["id"] for v in voided} == {str(s.code_ids[0]), str(s.code_ids[2])}
    a = await shop.post("/api/v1/allocations", {"product_id": str(s.product_id), "quantity": 1, "purpose": "x"})
    assert a.json()["codes"][0]["id"] == str(s.code_ids[3])  # the only one left
    r = await shop.post("/api/v1/allocations", {"product_id": str(s.product_id), "quantity": 1, "purpose": "x"})
    assert r.status_code == 409 and r.json()["code"] == "out_of_stock"


async def test_stock_alerts_endpoint_lists_open_alerts(shop):
    s = await shop.stock(2, low_stock_threshold=5)
    assert (await shop.get("/api/v1/stock-alerts")).json() == []
    await shop.run(lambda db: evaluate_alerts(db))
    alerts = (await shop.get("/api/v1/stock-alerts")).json()
    assert [(a["product_id"], a["kind"], a["status"]) for a in alerts] == [(str(s.product_id), "low_stock", "open")]
    assert alerts[0]["sku"].startswith("SKU-") and alerts[0]["details"]["available"] == 2


async def test_inventory_scopes(shop, client, make_api_client):
    s = await shop.stock(1)

    class T:
        id = shop.id

    reader = await make_api_client(T, ["inventory:read"])
    assert (await client.get(f"/api/v1/products/{s.product_id}/stock", headers=reader.headers)).status_code == 200
    r = await client.post("/api/v1/allocations", json={"product_id": str(s.product_id), "quantity": 1,
                                                        "purpose": "x"}, headers=reader.headers)
    assert r.status_code == 403
    r = await client.post("/api/v1/codes/void", json={"code_ids": [str(s.code_ids[0])], "reason": "recall"},
                          headers=reader.headers)
    assert r.status_code == 403
    catalog_only = await make_api_client(T, ["catalog:read"])
    assert (await client.get("/api/v1/codes", headers=catalog_only.headers)).status_code == 403

    async def state(db):
        return (await db.execute(select(Code.state).where(Code.id == s.code_ids[0]))).scalar_one()
    assert await shop.run(state) == "available"
