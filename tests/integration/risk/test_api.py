"""Risk API: rules, blocklists (phone digest, device, CIDR), refusals, flags, lockouts and their lifting,
scopes, bad input, and isolation between tenants."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from core.db.context import tenant_context
from core.members.services import normalize_phone, phone_digest
from core.risk import engine
from core.risk.gate import RiskSubject
from tests.integration.risk.helpers import Clock, attempt, fail_once, set_rules

UTC = dt.UTC


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(dt.datetime(2026, 7, 1, 2, 0, tzinfo=UTC))
    monkeypatch.setattr(engine, "_now", c)
    return c


async def test_rules_read_replace_and_validate(client, make_tenant, make_api_client):
    t = await make_tenant()
    api = await make_api_client(t)
    r = await client.get("/api/v1/risk/rules", headers=api.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["customized"] is False and body["timezone"] == "Asia/Shanghai"
    assert {"action": "claim", "dimension": "ip", "window": "day", "limit": 3, "active": True} in body[
        "limits"
    ]

    new = {
        "limits": [
            {"action": "grant", "dimension": "member", "window": "month", "limit": 5},
            {"action": "redeem", "dimension": "device", "window": "day", "limit": 50, "active": False},
        ],
        "velocity": {"failure_limit": 5, "window_minutes": 10, "lockout_minutes": 30},
        "device_member_limit": 4,
    }
    r = await client.put("/api/v1/risk/rules", json=new, headers=api.headers)
    assert r.status_code == 200, r.text
    saved = (await client.get("/api/v1/risk/rules", headers=api.headers)).json()
    assert saved["customized"] is True and saved["device_member_limit"] == 4
    assert saved["velocity"] == {"failure_limit": 5, "window_minutes": 10, "lockout_minutes": 30}
    assert [(x["action"], x["limit"], x["active"]) for x in saved["limits"]] == [
        ("grant", 5, True),
        ("redeem", 50, False),
    ]

    dup = {"limits": [new["limits"][0], {**new["limits"][0], "limit": 9}]}
    r = await client.put("/api/v1/risk/rules", json=dup, headers=api.headers)
    assert r.status_code == 422 and r.json()["code"] == "duplicate_rule"
    assert r.json()["errors"][0]["field"] == "limits[1]"
    for bad in (
        {"limits": [{"action": "hoard", "dimension": "member", "window": "day", "limit": 1}]},
        {"limits": [{"action": "grant", "dimension": "member", "window": "week", "limit": 1}]},
        {"limits": [{"action": "grant", "dimension": "member", "window": "day", "limit": 0}]},
        {"limits": [], "device_member_limit": "many"},
    ):
        r = await client.put("/api/v1/risk/rules", json=bad, headers=api.headers)
        assert r.status_code in (400, 422) and r.headers["content-type"].startswith(
            "application/problem+json"
        )
    assert (await client.get("/api/v1/risk/rules", headers=api.headers)).json() == saved  # unchanged

    reader = await make_api_client(t, ["risk:read"])
    r = await client.put("/api/v1/risk/rules", json=new, headers=reader.headers)
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"
    assert (await client.get("/api/v1/risk/rules")).status_code == 401


async def test_blocklist_phone_device_and_cidr(client, kernel, settings, make_tenant, make_api_client, clock):
    t = await make_tenant()
    api = await make_api_client(t)
    await set_rules(kernel, t.id)  # no limits: only the blocklist can refuse
    entries = [
        {"kind": "phone", "value": "138-0013-8000", "note": "scalper"},
        {"kind": "device", "value": "emulator-5554-abcdef"},
        {"kind": "ip", "value": "10.20.0.0/16"},
        {"kind": "ip", "value": "192.0.2.9"},
    ]
    created = []
    for e in entries:
        r = await client.post("/api/v1/risk/blocklist", json=e, headers=api.headers)
        assert r.status_code == 201, r.text
        created.append(r.json())
    assert created[0]["display"] == "138****8000" and "13800138000" not in str(created)
    assert [c["display"] for c in created[2:]] == ["10.20.0.0/16", "192.0.2.9"]
    r = await client.post(
        "/api/v1/risk/blocklist", json={"kind": "ip", "value": "10.20.9.9/16"}, headers=api.headers
    )
    assert r.status_code == 409 and r.json()["code"] == "already_blocked"
    for bad in (
        {"kind": "ip", "value": "10.300.0.1"},
        {"kind": "ip", "value": "0.0.0.0/0"},
        {"kind": "phone", "value": "12345"},
        {"kind": "device", "value": "has space"},
        {"kind": "email", "value": "a@b.c"},
        {"kind": "ip", "value": ""},
    ):
        r = await client.post("/api/v1/risk/blocklist", json=bad, headers=api.headers)
        assert r.status_code in (400, 422), (bad, r.text)
    listing = (await client.get("/api/v1/risk/blocklist", headers=api.headers)).json()
    assert len(listing["items"]) == 4
    ips = (await client.get("/api/v1/risk/blocklist?kind=ip", headers=api.headers)).json()["items"]
    assert {i["display"] for i in ips} == {"10.20.0.0/16", "192.0.2.9"}

    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            digest = await phone_digest(db, kernel, normalize_phone("13800138000"))
    go = lambda s: attempt(kernel, settings, t.id, "claim", s)  # noqa: E731
    assert await go(RiskSubject(phone_digest=digest)) == "blocked_phone"
    assert await go(RiskSubject(device_id="emulator-5554-abcdef")) == "blocked_device"
    assert await go(RiskSubject(ip="10.20.255.1")) == "blocked_ip"
    assert await go(RiskSubject(ip="192.0.2.9")) == "blocked_ip"
    assert await go(RiskSubject(ip="10.21.0.1")) is None
    assert await go(RiskSubject(ip="2001:db8::1")) is None

    r = await client.delete(f"/api/v1/risk/blocklist/{created[2]['id']}", headers=api.headers)
    assert r.status_code == 204
    assert await go(RiskSubject(ip="10.20.255.1")) is None
    r = await client.delete(f"/api/v1/risk/blocklist/{created[2]['id']}", headers=api.headers)
    assert r.status_code == 404 and r.json()["code"] == "block_not_found"

    refusals = (await client.get("/api/v1/risk/refusals", headers=api.headers)).json()["items"]
    assert [x["reason"] for x in refusals] == ["blocked_ip", "blocked_ip", "blocked_device", "blocked_phone"]
    assert refusals[1]["subject"] == "10.20.255.*" and refusals[2]["subject"] == "emul…ef"
    assert all(x["action"] == "claim" and x["occurred_at"].startswith("2026-07-01T02:00") for x in refusals)
    only = (await client.get("/api/v1/risk/refusals?reason=blocked_phone", headers=api.headers)).json()[
        "items"
    ]
    assert len(only) == 1 and only[0]["subject"] == "phone#" + digest[:8]


async def test_refusals_page_newest_first(client, kernel, settings, make_tenant, make_api_client, clock):
    t = await make_tenant()
    api = await make_api_client(t)
    await set_rules(kernel, t.id, ("grant", "member", "day", 1))
    member = RiskSubject(member_id=uuid.uuid4(), client_id=api.client_pk)
    assert await attempt(kernel, settings, t.id, "grant", member) is None
    for _ in range(3):
        assert await attempt(kernel, settings, t.id, "grant", member, quantity=1) == "limit_member_day"
    first = (await client.get("/api/v1/risk/refusals?limit=2", headers=api.headers)).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = (
        await client.get(f"/api/v1/risk/refusals?limit=2&cursor={first['next_cursor']}", headers=api.headers)
    ).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    item = rest["items"][0]
    assert item["member_id"] == str(member.member_id) and item["client_id"] == str(api.client_pk)
    assert item["limit"] == 1 and item["dimension"] == "member"
    assert (await client.get("/api/v1/risk/refusals?action=claim", headers=api.headers)).json()["items"] == []
    assert (await client.get("/api/v1/risk/refusals?action=hoard", headers=api.headers)).status_code in (
        400,
        422,
    )


async def test_lockouts_listed_and_lifted(client, kernel, settings, make_tenant, make_api_client, clock):
    t = await make_tenant()
    api = await make_api_client(t)
    await set_rules(kernel, t.id, failure_limit=2, window_minutes=10, lockout_minutes=15)
    guesser = RiskSubject(client_id=api.client_pk)
    for _ in range(2):
        await fail_once(kernel, settings, t.id, guesser)
    assert await attempt(kernel, settings, t.id, "redeem", guesser) == "locked_out"
    r = await client.get("/api/v1/risk/lockouts?active=true", headers=api.headers)
    locks = r.json()["items"]
    assert len(locks) == 1 and locks[0]["active"] is True and locks[0]["dimension"] == "client"
    assert locks[0]["subject"] == str(api.client_pk) and locks[0]["failures"] == 2
    reader = await make_api_client(t, ["risk:read"])
    assert (
        await client.delete(f"/api/v1/risk/lockouts/{locks[0]['id']}", headers=reader.headers)
    ).status_code == 403
    r = await client.delete(f"/api/v1/risk/lockouts/{locks[0]['id']}", headers=api.headers)
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False and r.json()["lifted_by"].startswith("client:")
    assert await attempt(kernel, settings, t.id, "redeem", guesser) is None
    r = await client.delete(f"/api/v1/risk/lockouts/{locks[0]['id']}", headers=api.headers)
    assert r.status_code == 409 and r.json()["code"] == "lockout_not_active"
    assert (await client.get("/api/v1/risk/lockouts?active=true", headers=api.headers)).json()["items"] == []
    assert len((await client.get("/api/v1/risk/lockouts", headers=api.headers)).json()["items"]) == 1


async def test_flags_listed(client, kernel, settings, make_tenant, make_api_client, clock):
    t = await make_tenant()
    api = await make_api_client(t)
    await set_rules(kernel, t.id, device_member_limit=1)
    for _ in range(2):
        await attempt(
            kernel, settings, t.id, "claim", RiskSubject(member_id=uuid.uuid4(), device_id="pad-000123")
        )
    flags = (await client.get("/api/v1/risk/flags", headers=api.headers)).json()["items"]
    assert len(flags) == 1
    assert flags[0] | {"id": None, "created_at": None} == {
        "id": None,
        "created_at": None,
        "kind": "device_many_members",
        "day": "2026-07-01",
        "subject": "pad-…23",
        "member_count": 2,
    }


async def test_tenant_b_never_sees_or_changes_tenant_a(
    client, kernel, settings, make_tenant, make_api_client, clock
):
    a, b = await make_tenant(), await make_tenant()
    api_a, api_b = await make_api_client(a), await make_api_client(b)
    await set_rules(kernel, a.id, ("claim", "ip", "day", 1), failure_limit=1, device_member_limit=1)
    block = (
        await client.post(
            "/api/v1/risk/blocklist", json={"kind": "device", "value": "dev-a-1234567"}, headers=api_a.headers
        )
    ).json()
    ip = RiskSubject(ip="203.0.113.50")
    assert await attempt(kernel, settings, a.id, "claim", ip) is None
    assert await attempt(kernel, settings, a.id, "claim", ip) == "limit_ip_day"
    await fail_once(kernel, settings, a.id, RiskSubject(ip="203.0.113.51"))
    for _ in range(2):
        await attempt(
            kernel, settings, a.id, "grant", RiskSubject(member_id=uuid.uuid4(), device_id="d-shared-99")
        )
    lock = (await client.get("/api/v1/risk/lockouts", headers=api_a.headers)).json()["items"][0]

    # tenant B: its own defaults, nothing of A's, and A's objects are 404
    rules_b = (await client.get("/api/v1/risk/rules", headers=api_b.headers)).json()
    assert rules_b["customized"] is False and rules_b["device_member_limit"] == 3
    for path in ("blocklist", "refusals", "flags", "lockouts"):
        assert (await client.get(f"/api/v1/risk/{path}", headers=api_b.headers)).json()["items"] == []
        assert (await client.get(f"/api/v1/risk/{path}", headers=api_a.headers)).json()["items"] != []
    r = await client.delete(f"/api/v1/risk/blocklist/{block['id']}", headers=api_b.headers)
    assert r.status_code == 404
    r = await client.delete(f"/api/v1/risk/lockouts/{lock['id']}", headers=api_b.headers)
    assert r.status_code == 404
    # A's counters, blocklist and lockouts do not touch B's subjects
    assert await attempt(kernel, settings, b.id, "claim", ip) is None
    assert await attempt(kernel, settings, b.id, "claim", RiskSubject(device_id="dev-a-1234567")) is None
    assert await attempt(kernel, settings, b.id, "redeem", RiskSubject(ip="203.0.113.51")) is None
    # and A's entries are still there
    assert (await client.get("/api/v1/risk/blocklist", headers=api_a.headers)).json()["items"][0][
        "id"
    ] == block["id"]
    assert await attempt(kernel, settings, a.id, "redeem", RiskSubject(ip="203.0.113.51")) == "locked_out"
