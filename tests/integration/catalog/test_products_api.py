"""Catalog API: every product rule answers 422 with the field, SKU clashes 409, bundles, changes, lists."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import update

from core.catalog.models import Product
from core.catalog.services import get_product_by_sku
from core.db.context import tenant_context
from core.errors import NotFound
from tests.integration.inventory.stocking import stock_product

FUTURE = (dt.datetime.now(dt.UTC) + dt.timedelta(days=90)).isoformat()
PAST = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()


def body(**fields):
    base = {"sku": f"SKU-{uuid.uuid4().hex[:8]}", "kind": "code", "name_zh": "爱奇艺黄金会员月卡",
            "name_en": "iQIYI Gold monthly", "brand": "iQIYI", "category": "video", "face_value": 2500,
            "currency": "CNY", "code_format": "number_pin", "tags": ["视频", "monthly"]}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


@pytest.fixture
async def api(client, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant)

    class Api:
        id = tenant.id
        headers = creds.headers

        async def create(self, **fields):
            return await client.post("/api/v1/products", json=body(**fields), headers=creds.headers)

        async def patch(self, product_id, **fields):
            return await client.patch(f"/api/v1/products/{product_id}", json=fields, headers=creds.headers)

        async def get(self, path, **params):
            return await client.get(path, params=params, headers=creds.headers)

    return Api()


async def test_create_read_and_audit_a_product(api):
    r = await api.create(validity_kind="days_after_issue", validity_days=30, provenance="authorised_reseller",
                         low_stock_threshold=50, near_expiry_days=14, usage_rules="仅限新用户")
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["kind"] == "code" and p["code_format"] == "number_pin" and p["face_value"] == 2500
    assert p["validity_days"] == 30 and p["validity_date"] is None and p["status"] == "active"
    assert p["tags"] == ["视频", "monthly"] and p["items"] == []
    got = (await api.get(f"/api/v1/products/{p['id']}")).json()
    assert got == p
    events = (await api.get("/api/v1/audit/events", limit=10)).json()["items"]
    created = [e for e in events if e["action"] == "product.created" and e["object_id"] == p["id"]]
    assert created and created[0]["data"]["sku"] == p["sku"]


async def test_defaults_and_code_format_of_each_kind(api):
    plain = (await api.create(code_format=...)).json()
    assert plain["code_format"] == "number" and plain["validity_kind"] == "batch_expiry"
    assert plain["near_expiry_days"] == 30 and plain["provenance"] == "official"
    card = (await api.create(kind="stored_value", code_format="number_pin", currency="usd")).json()
    assert card["currency"] == "USD"
    reusable = await api.create(kind="reusable_code", code_format="number", max_uses=5)
    assert reusable.status_code == 201 and reusable.json()["max_uses"] == 5
    fixed = await api.create(validity_kind="fixed_date", validity_date=FUTURE)
    assert fixed.status_code == 201 and fixed.json()["validity_date"]


TOO_MANY_TAGS = [f"t{i}" for i in range(21)]


@pytest.mark.parametrize(("fields", "field", "code"), [
    ({"kind": "ticket"}, "kind", "invalid_choice"),
    ({"code_format": "qr"}, "code_format", "invalid_choice"),
    ({"sku": "bad sku"}, "sku", "invalid_sku"),
    ({"sku": "x" * 65}, "sku", "invalid_sku"),
    ({"name_zh": "   "}, "name_zh", "required"),
    ({"name_zh": "名" * 201}, "name_zh", "too_long"),
    ({"name_en": "n" * 201}, "name_en", "too_long"),
    ({"face_value": -1}, "face_value", "integer_fen"),  # money is refused where bodies are decoded
    ({"face_value": 25.5}, "face_value", "integer_fen"),
    ({"face_value": "a lot"}, "face_value", "integer_fen"),
    ({"currency": "ZZZ"}, "currency", "invalid_currency"),
    ({"validity_kind": "forever"}, "validity_kind", "invalid_choice"),
    ({"validity_kind": "fixed_date"}, "validity_date", "required"),
    ({"validity_kind": "fixed_date", "validity_date": PAST}, "validity_date", "in_the_past"),
    ({"validity_kind": "fixed_date", "validity_date": "2099-01-01T00:00:00"}, "validity_date", "naive_datetime"),
    ({"validity_kind": "fixed_date", "validity_date": FUTURE, "validity_days": 3}, "validity_days",
     "not_applicable"),
    ({"validity_kind": "days_after_issue"}, "validity_days", "required"),
    ({"validity_kind": "days_after_issue", "validity_days": 0}, "validity_days", "out_of_range"),
    ({"validity_kind": "days_after_issue", "validity_days": 3651}, "validity_days", "out_of_range"),
    ({"validity_kind": "days_after_issue", "validity_days": 7, "validity_date": FUTURE}, "validity_date",
     "not_applicable"),
    ({"validity_kind": "batch_expiry", "validity_days": 7}, "validity_days", "not_applicable"),
    ({"validity_kind": "batch_expiry", "validity_date": FUTURE}, "validity_date", "not_applicable"),
    ({"provenance": "grey_market"}, "provenance", "invalid_choice"),
    ({"status": "archived"}, "status", "invalid_transition"),
    ({"status": "deleted"}, "status", "invalid_choice"),
    ({"tags": TOO_MANY_TAGS}, "tags", "too_many"),
    ({"tags": ["ok", "x" * 31]}, "tags[1]", "too_long"),
    ({"tags": [" "]}, "tags[0]", "required"),
    ({"kind": "reusable_code"}, "max_uses", "out_of_range"),
    ({"kind": "reusable_code", "max_uses": 1}, "max_uses", "out_of_range"),
    ({"max_uses": 5}, "max_uses", "not_applicable"),
    ({"low_stock_threshold": 10, "low_stock_days_cover": 7}, "low_stock_days_cover", "exclusive"),
    ({"low_stock_threshold": -1}, "low_stock_threshold", "out_of_range"),
    ({"low_stock_days_cover": 0}, "low_stock_days_cover", "out_of_range"),
    ({"near_expiry_days": 0}, "near_expiry_days", "out_of_range"),
    ({"near_expiry_days": 366}, "near_expiry_days", "out_of_range"),
    ({"items": [{"product_id": str(uuid.uuid4()), "quantity": 2}]}, "items", "not_applicable"),
    ({"colour": "red"}, "colour", "unknown_field"),
])
async def test_each_rule_is_a_field_error(api, fields, field, code):
    r = await api.create(**fields)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "validation_failed"
    assert (field, code) in [(e["field"], e.get("code", "invalid")) for e in problem["errors"]], problem
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_several_problems_are_reported_together_in_both_languages(api, client):
    r = await client.post("/api/v1/products", json=body(name_zh="", currency="ZZZ", provenance="x"),
                          headers={**api.headers, "Accept-Language": "en"})
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} >= {"name_zh", "currency", "provenance"}
    assert "more problem" in r.json()["detail"]
    r = await client.post("/api/v1/products", json=body(name_zh=""), headers=api.headers)
    assert r.json()["detail"] == "中文名称为必填项"


async def test_sku_is_unique_per_tenant(api, client, make_tenant, make_api_client):
    first = await api.create(sku="IQY-GOLD-1M")
    assert first.status_code == 201
    again = await api.create(sku="IQY-GOLD-1M")
    assert again.status_code == 409 and again.json()["code"] == "sku_taken"
    other = await make_api_client(await make_tenant())
    r = await client.post("/api/v1/products", json=body(sku="IQY-GOLD-1M"), headers=other.headers)
    assert r.status_code == 201  # another tenant may use the same SKU


async def test_bundles(api):
    a = (await api.create()).json()
    b = (await api.create(kind="stored_value")).json()
    r = await api.create(kind="bundle", code_format=None, name_zh="影音礼包",
                         items=[{"product_id": a["id"], "quantity": 1}, {"product_id": b["id"], "quantity": 2}])
    assert r.status_code == 201, r.text
    bundle = r.json()
    assert bundle["code_format"] is None
    assert [(i["product_id"], i["quantity"], i["sku"]) for i in bundle["items"]] == [
        (a["id"], 1, a["sku"]), (b["id"], 2, b["sku"])]
    assert (await api.get(f"/api/v1/products/{bundle['id']}")).json()["items"] == bundle["items"]
    single = await api.create(kind="bundle", code_format=None, items=[{"product_id": a["id"], "quantity": 3}])
    assert single.status_code == 201

    def item(pid, q=1):
        return {"product_id": pid, "quantity": q}

    cases = [
        ([item(a["id"])], "items", "too_few"),
        ([], "items", "too_few"),
        ([item(a["id"]), item(a["id"])], "items[1].product_id", "duplicate"),
        ([item(a["id"], 0), item(b["id"])], "items[0].quantity", "out_of_range"),
        ([item(a["id"], 101), item(b["id"])], "items[0].quantity", "out_of_range"),
        ([item(a["id"]), item(bundle["id"])], "items[1].product_id", "nested_bundle"),
        ([item(a["id"]), item(str(uuid.uuid4()))], "items[1].product_id", "not_found"),
    ]
    for items, field, code in cases:
        r = await api.create(kind="bundle", code_format=None, items=items)
        assert r.status_code == 422, (items, r.text)
        assert (field, code) in [(e["field"], e.get("code", "invalid")) for e in r.json()["errors"]], (items, r.json())
    r = await api.create(kind="bundle", code_format="number", items=[item(a["id"]), item(b["id"])])
    assert ("code_format", "not_applicable") in [(e["field"], e.get("code", "invalid")) for e in r.json()["errors"]]
    r = await api.create(kind="bundle", code_format=None, low_stock_threshold=3, items=[item(a["id"], 2)])
    assert r.status_code == 422
    # an archived product cannot go into a new bundle
    assert (await api.patch(b["id"], status="archived")).status_code == 200
    r = await api.create(kind="bundle", code_format=None, items=[item(a["id"]), item(b["id"])])
    assert ("items[1].product_id", "archived") in [(e["field"], e.get("code", "invalid")) for e in r.json()["errors"]]
    # items are replaced as a whole
    r = await api.patch(single.json()["id"], items=[item(a["id"], 5)])
    assert r.status_code == 200 and r.json()["items"][0]["quantity"] == 5
    r = await api.patch(single.json()["id"], items=[item(a["id"], 1)])
    assert r.status_code == 422


async def test_another_tenants_product_cannot_go_into_a_bundle(api, client, make_tenant, make_api_client):
    other = await make_api_client(await make_tenant())
    theirs = (await client.post("/api/v1/products", json=body(), headers=other.headers)).json()
    mine = (await api.create()).json()
    r = await api.create(kind="bundle", code_format=None,
                         items=[{"product_id": mine["id"], "quantity": 1}, {"product_id": theirs["id"], "quantity": 1}])
    assert r.status_code == 422
    assert ("items[1].product_id", "not_found") in [(e["field"], e.get("code", "invalid")) for e in r.json()["errors"]]


async def test_update_rules_and_audit(api, kernel):
    p = (await api.create(validity_kind="fixed_date", validity_date=FUTURE)).json()
    r = await api.patch(p["id"], name_en="Gold", face_value=3000, tags=["a", "a", "b"])
    assert r.status_code == 200, r.text
    assert r.json()["name_en"] == "Gold" and r.json()["face_value"] == 3000 and r.json()["tags"] == ["a", "b"]
    # switching the validity rule drops the old rule's value
    r = await api.patch(p["id"], validity_kind="days_after_issue", validity_days=60)
    assert r.status_code == 200 and r.json()["validity_date"] is None and r.json()["validity_days"] == 60
    r = await api.patch(p["id"], validity_kind="fixed_date", validity_date=PAST)
    assert r.status_code == 422
    # status: active ⇄ inactive, → archived, archived → inactive only
    assert (await api.patch(p["id"], status="inactive")).json()["status"] == "inactive"
    assert (await api.patch(p["id"], status="active")).json()["status"] == "active"
    assert (await api.patch(p["id"], status="archived")).json()["status"] == "archived"
    r = await api.patch(p["id"], status="active")
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "invalid_transition"
    assert (await api.patch(p["id"], status="inactive")).json()["status"] == "inactive"
    # kind never changes; unknown product is 404; nullable fields clear with null
    r = await api.patch(p["id"], kind="bundle")
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "unknown_field"
    assert (await api.patch(str(uuid.uuid4()), name_en="x")).status_code == 404
    r = await api.patch(p["id"], low_stock_threshold=5)
    assert r.json()["low_stock_threshold"] == 5
    r = await api.patch(p["id"], low_stock_days_cover=3)
    assert r.status_code == 422
    r = await api.patch(p["id"], low_stock_threshold=None, low_stock_days_cover=3)
    assert r.status_code == 200 and r.json()["low_stock_days_cover"] == 3
    events = (await api.get("/api/v1/audit/events", limit=50)).json()["items"]
    updates = [e for e in events if e["action"] == "product.updated" and e["object_id"] == p["id"]]
    assert any(e["data"]["changes"].get("face_value") == 3000 for e in updates)
    assert any(e["data"]["changes"].get("status") == "archived" for e in updates)


async def test_an_expired_fixed_date_does_not_block_other_changes(api, kernel):
    p = (await api.create(validity_kind="fixed_date", validity_date=FUTURE)).json()
    with tenant_context(api.id):
        async with kernel.db.transaction() as db:
            await db.execute(update(Product).where(Product.id == uuid.UUID(p["id"]))
                             .values(validity_date=dt.datetime.now(dt.UTC) - dt.timedelta(days=2)))
    assert (await api.patch(p["id"], name_en="still editable")).status_code == 200


async def test_sku_change_clash_and_code_format_locked_once_stocked(api, kernel):
    a = (await api.create(sku="A-1")).json()
    b = (await api.create(sku="B-1", code_format="number")).json()
    r = await api.patch(b["id"], sku="A-1")
    assert r.status_code == 409 and r.json()["code"] == "sku_taken"
    assert (await api.patch(b["id"], code_format="number_pin")).status_code == 200
    await stock_product(kernel, api.id, 2, product_id=uuid.UUID(a["id"]))
    r = await api.patch(a["id"], code_format="number")
    assert r.status_code == 409 and r.json()["code"] == "product_has_stock"


async def test_list_filters_search_and_cursor(api):
    made = [
        (await api.create(sku="IQY-01", brand="iQIYI", category="video", tags=["视频会员", "hot"])).json(),
        (await api.create(sku="LK-COFFEE", name_zh="瑞幸咖啡券", name_en="Luckin coffee", brand="Luckin",
                          category="food", kind="reusable_code", code_format="number", max_uses=3)).json(),
        (await api.create(sku="SV-100", kind="stored_value", name_zh="超市购物卡", brand="Wumart",
                          category="retail", tags=["hot"], status="inactive")).json(),
        (await api.create(sku="JD_E-CARD", name_zh="京东E卡", brand="JD", category="retail")).json(),
        (await api.create(sku="JDXE-CARD", name_zh="京东X卡", brand="JD", category="retail")).json(),
    ]

    async def skus(**params):
        r = await api.get("/api/v1/products", **params)
        assert r.status_code == 200, r.text
        return {p["sku"] for p in r.json()["items"]}

    assert await skus() == {p["sku"] for p in made}
    assert await skus(kind="reusable_code") == {"LK-COFFEE"}
    assert await skus(status="inactive") == {"SV-100"}
    assert await skus(brand="JD") == {"JD_E-CARD", "JDXE-CARD"}
    assert await skus(category="retail", status="active") == {"JD_E-CARD", "JDXE-CARD"}
    assert await skus(tag="hot") == {"IQY-01", "SV-100"}
    assert await skus(tag="视频会员") == {"IQY-01"}
    assert await skus(tag="ho") == set()
    assert await skus(q="coffee") == {"LK-COFFEE"}  # English name, any case
    assert await skus(q="咖啡") == {"LK-COFFEE"}
    assert await skus(q="iqy") == {"IQY-01"}
    assert await skus(q="JD_") == {"JD_E-CARD"}  # LIKE wildcards are literal
    r = await api.get("/api/v1/products", kind="ticket")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "kind"

    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await api.get("/api/v1/products", **params)).json()
        seen += [p["sku"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [p["sku"] for p in reversed(made)]  # newest first, each once


async def test_get_product_by_sku(api, kernel):
    p = (await api.create(sku="BY-SKU-1")).json()
    with tenant_context(api.id):
        async with kernel.db.transaction() as db:
            assert str((await get_product_by_sku(db, " BY-SKU-1 ")).id) == p["id"]
            with pytest.raises(NotFound):
                await get_product_by_sku(db, "NOPE")


async def test_scopes_guard_the_catalog(client, make_tenant, make_api_client):
    t = await make_tenant()
    reader = await make_api_client(t, ["catalog:read"])
    r = await client.post("/api/v1/products", json=body(), headers=reader.headers)
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"
    assert (await client.get("/api/v1/products", headers=reader.headers)).status_code == 200
    nobody = await make_api_client(t, ["tenant:read"])
    assert (await client.get("/api/v1/products", headers=nobody.headers)).status_code == 403
    assert (await client.get("/api/v1/products")).status_code == 401
