"""Stores over the API: create, unique code and name, change, deactivate; redemptions linked to a store
record (free text until the tenant has stores, then a clear 422 for an unknown or deactivated store); the
redemption list's store/user filters; the per-store and per-user summary over tenant-zone days."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.integration.redemption.helpers import code_state, issued_codes

STORES = "/api/v1/stores"
REDEEM = "/api/v1/redemptions"
SCOPES = ["stores:read", "stores:write", "redemptions:read", "redemptions:write"]


async def _store(client: Any, api: Any, code: str, name: str, **more: str) -> dict[str, Any]:
    r = await client.post(STORES, json={"code": code, "name": name, **more}, headers=api.headers)
    assert r.status_code == 201, r.text
    return r.json()


async def test_create_change_and_deactivate_a_store(client, make_tenant, make_api_client):
    t = await make_tenant()
    api = await make_api_client(t, SCOPES)
    body = {"code": " sh01 ", "name": "静安店", "province": "上海市", "city": "上海市", "district": "静安区",
            "address": "南京西路 1 号", "phone": "021-12345678"}  # fmt: skip
    r = await client.post(STORES, json=body, headers={**api.headers, "Idempotency-Key": "store-1"})
    assert r.status_code == 201, r.text
    store = r.json()
    assert store["code"] == "SH01" and store["active"] is True and store["district"] == "静安区"
    replay = await client.post(STORES, json=body, headers={**api.headers, "Idempotency-Key": "store-1"})
    assert replay.status_code == 201 and replay.json()["id"] == store["id"]  # answered once

    dup = await client.post(STORES, json={"code": "SH01", "name": "别的店"}, headers=api.headers)
    assert dup.status_code == 409 and dup.json()["code"] == "store_exists"
    assert dup.json()["errors"][0]["field"] == "code"
    dup = await client.post(STORES, json={"code": "SH02", "name": "静安店"}, headers=api.headers)
    assert dup.status_code == 409 and dup.json()["errors"][0]["field"] == "name"
    bad = await client.post(STORES, json={"code": "上海 1", "name": "x"}, headers=api.headers)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    blank = await client.post(STORES, json={"code": "SH03", "name": "   "}, headers=api.headers)
    assert blank.status_code == 422 and blank.json()["errors"][0]["field"] == "name"

    r = await client.patch(f"{STORES}/{store['id']}", json={"phone": "021-1"}, headers=api.headers)
    assert r.status_code == 200 and r.json()["phone"] == "021-1" and r.json()["name"] == "静安店"
    r = await client.post(f"{STORES}/{store['id']}/deactivate", headers=api.headers)
    assert r.status_code == 200 and r.json()["active"] is False
    listed = (await client.get(STORES, headers=api.headers)).json()["items"]
    assert [s["code"] for s in listed] == ["SH01"]
    assert (await client.get(STORES, params={"active_only": "true"}, headers=api.headers)).json()[
        "items"
    ] == []
    r = await client.post(f"{STORES}/{store['id']}/activate", headers=api.headers)
    assert r.json()["active"] is True

    reader = await make_api_client(t, ["stores:read"])
    r = await client.post(STORES, json={"code": "X1", "name": "x"}, headers=reader.headers)
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"
    missing = await client.get(f"{STORES}/{'0' * 8}-0000-0000-0000-{'0' * 12}", headers=api.headers)
    assert missing.status_code == 404 and missing.json()["code"] == "store_not_found"


async def test_free_text_store_until_the_tenant_has_stores(client, kernel, make_tenant, make_api_client):
    t = await make_tenant()
    api = await make_api_client(t, SCOPES)
    iss = await issued_codes(kernel, t.id, 5, with_pin=False)
    r = await client.post(REDEEM, json={"code": iss.numbers[0], "store": "Pop-up stand"}, headers=api.headers)
    assert r.status_code == 201 and r.json()["store"] == "Pop-up stand" and r.json()["store_id"] is None

    store = await _store(client, api, "SH01", "静安店")
    by_code = await client.post(REDEEM, json={"code": iss.numbers[1], "store": "sh01"}, headers=api.headers)
    assert by_code.status_code == 201, by_code.text
    assert by_code.json()["store_id"] == store["id"] and by_code.json()["store"] == "静安店"
    by_id = await client.post(
        REDEEM, json={"code": iss.numbers[2], "store_id": store["id"]}, headers=api.headers
    )
    assert by_id.json()["store_id"] == store["id"]

    unknown = await client.post(
        REDEEM, json={"code": iss.numbers[3], "store": "Pop-up stand"}, headers=api.headers
    )
    assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_store"
    assert unknown.json()["errors"][0]["field"] == "store"
    assert await code_state(kernel, t.id, iss.code_ids[3]) == "issued"  # nothing written

    await client.post(f"{STORES}/{store['id']}/deactivate", headers=api.headers)
    closed = await client.post(REDEEM, json={"code": iss.numbers[3], "store": "静安店"}, headers=api.headers)
    assert closed.status_code == 422 and closed.json()["code"] == "store_inactive"
    assert await code_state(kernel, t.id, iss.code_ids[3]) == "issued"
    # no store named: still allowed (an API till that does not say where)
    assert (await client.post(REDEEM, json={"code": iss.numbers[4]}, headers=api.headers)).status_code == 201

    mine = (await client.get(REDEEM, params={"store_id": store["id"]}, headers=api.headers)).json()["items"]
    assert {r["id"] for r in mine} == {by_code.json()["id"], by_id.json()["id"]}


async def test_summary_per_store_and_user_over_tenant_days(client, kernel, make_tenant, make_api_client):
    t = await make_tenant()
    api = await make_api_client(t, SCOPES)
    east = await _store(client, api, "E1", "东店")
    west = await _store(client, api, "W1", "西店")
    iss = await issued_codes(kernel, t.id, 4, with_pin=False)  # face value 1000 fen each
    for number, store in zip(iss.numbers, ("E1", "E1", "W1", "E1"), strict=True):
        r = await client.post(REDEEM, json={"code": number, "store": store}, headers=api.headers)
        assert r.status_code == 201, r.text
    last = r.json()
    r = await client.post(f"{REDEEM}/{last['id']}/rollback", json={"reason": "wrong"}, headers=api.headers)
    assert r.status_code == 200, r.text

    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()  # the tenant's zone: Asia/Shanghai
    week = {"from": str(today - dt.timedelta(days=6)), "to": str(today)}
    s = (await client.get(f"{REDEEM}/summary", params=week, headers=api.headers)).json()
    assert s["timezone"] == "Asia/Shanghai" and s["count"] == 3 and s["value"] == 3000
    rows = {row["code"]: row for row in s["by_store"]}
    assert rows["E1"]["id"] == east["id"] and rows["E1"]["count"] == 2 and rows["E1"]["value"] == 2000
    assert rows["E1"]["rolled_back"] == 1 and rows["W1"]["count"] == 1 and rows["W1"]["id"] == west["id"]
    assert [u["id"] for u in s["by_user"]] == [None]  # redeemed by an API client, not a console user
    only_west = (
        await client.get(f"{REDEEM}/summary", params={**week, "store_id": west["id"]}, headers=api.headers)
    ).json()
    assert only_west["count"] == 1 and [r["code"] for r in only_west["by_store"]] == ["W1"]
    earlier = {"from": str(today - dt.timedelta(days=30)), "to": str(today - dt.timedelta(days=1))}
    assert (await client.get(f"{REDEEM}/summary", params=earlier, headers=api.headers)).json()["count"] == 0

    bad = await client.get(
        f"{REDEEM}/summary", params={"from": str(today), "to": "2000-01-01"}, headers=api.headers
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "to"
    long = {"from": "2020-01-01", "to": "2024-01-01"}
    assert (await client.get(f"{REDEEM}/summary", params=long, headers=api.headers)).status_code == 422
    # the ends of the calendar: a day either side would not exist in every zone — a 422, never a 500
    for edge in ({"from": "9999-12-31", "to": "9999-12-31"}, {"from": "0001-01-01", "to": "0001-01-01"}):
        r = await client.get(f"{REDEEM}/summary", params=edge, headers=api.headers)
        assert r.status_code == 422 and r.json()["errors"][0]["code"] == "invalid_range", r.text
