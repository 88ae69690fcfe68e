"""Grants API: Idempotency-Key required and replayed, masked vs revealed codes, bad input, void, filters,
isolation between tenants, and no plaintext phone or code at rest."""

from __future__ import annotations

import uuid

from sqlalchemy import event, select, text, update

from core.events.models import Event
from core.grants import services
from core.grants.models import Grant, GrantItem
from core.inventory.models import Code
from core.jobs.models import OutboxMessage

PHONE = "+86 138-1234-5678"


def body(product_id, **kw):
    return {"product_id": str(product_id), **kw}


async def test_missing_idempotency_key_is_refused(shop):
    s = await shop.stock(3)
    r = await shop.post("/api/v1/grants", body(s.product_id, phone=PHONE), key=None)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "idempotency_key_required"
    codes = await shop.run(lambda db: db.execute(select(Code.state).where(Code.product_id == s.product_id)))
    assert sorted(codes.scalars()) == ["available"] * 3  # nothing was taken


async def test_grant_masked_without_reveal_scope(shop):
    s = await shop.stock(5)
    r = await shop.post(
        "/api/v1/grants",
        body(s.product_id, quantity=2, phone=PHONE, name="张三", campaign_ref="REG-2026", channel="none"),
    )
    assert r.status_code == 201, r.text
    g = r.json()
    assert g["ref"].startswith("G-") and g["status"] == "created" and g["revealed"] is False
    assert g["member"]["phone_masked"] == "138****5678" and g["member"]["name"] == "张三"
    assert len(g["codes"]) == 2
    numbers = set(s.numbers)
    for c in g["codes"]:
        assert "number" not in c and "pin" not in c
        assert c["masked"].endswith(c["last4"]) and any(n.endswith(c["last4"]) for n in numbers)
    assert "1381234" not in r.text


async def test_grant_revealed_with_reveal_scope_is_audited(shop):
    s = await shop.stock(3)
    r = await shop.post(
        "/api/v1/grants", body(s.product_id, email="a@example.com", channel="none"), reveal=True
    )
    assert r.status_code == 201, r.text
    g = r.json()
    assert g["revealed"] is True and r.headers["cache-control"] == "no-store"
    (code,) = g["codes"]
    assert code["number"] in s.numbers and code["pin"].startswith("P")
    actions = await shop.run(
        lambda db: db.execute(
            text("select action from audit_events where object_id = :oid"), {"oid": g["id"]}
        )
    )
    assert {"grant.created", "grant.codes_revealed"} <= set(actions.scalars())


async def test_idempotent_replay_returns_the_same_codes(shop):
    s = await shop.stock(6)
    payload = body(s.product_id, quantity=2, external_id="crm-42", channel="none")
    first = await shop.post("/api/v1/grants", payload, key="grant-key-1", reveal=True)
    again = await shop.post("/api/v1/grants", payload, key="grant-key-1", reveal=True)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content and again.headers.get("idempotent-replayed") == "true"
    other = await shop.post("/api/v1/grants", {**payload, "quantity": 3}, key="grant-key-1", reveal=True)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    count = await shop.run(lambda db: db.execute(select(Grant.id).where(Grant.product_id == s.product_id)))
    assert len(list(count.scalars())) == 1
    issued = await shop.run(
        lambda db: db.execute(select(Code.id).where(Code.product_id == s.product_id, Code.state == "issued"))
    )
    assert len(list(issued.scalars())) == 2


async def test_bad_input(shop):
    s = await shop.stock(2)
    r = await shop.post("/api/v1/grants", body(uuid.uuid4(), phone=PHONE))
    assert r.status_code == 404 and r.json()["code"] == "product_not_found"
    for qty in (0, -1, 101, 10_000_000):
        r = await shop.post("/api/v1/grants", body(s.product_id, quantity=qty, phone=PHONE))
        assert r.status_code == 422, (qty, r.text)
        assert r.json()["errors"][0]["field"] == "quantity"
    for phone in ("12345", "+1 415 555 0100", "1381234567x", "23812345678"):
        r = await shop.post("/api/v1/grants", body(s.product_id, phone=phone))
        assert r.status_code == 422, (phone, r.text)
        assert r.json()["errors"][0]["field"] == "phone"
    r = await shop.post("/api/v1/grants", body(s.product_id))
    assert r.status_code == 422 and r.json()["code"] == "recipient_required"
    r = await shop.post("/api/v1/grants", body(s.product_id, phone=PHONE, channel="pigeon"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "channel"
    r = await shop.post("/api/v1/grants", body(s.product_id, external_id="x", channel="sms"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "phone"
    r = await shop.post("/api/v1/grants", {"product_id": "not-a-uuid", "phone": PHONE})
    assert r.status_code in (400, 422)
    r = await shop.post("/api/v1/grants", body(s.product_id, quantity=3, phone=PHONE))
    assert r.status_code == 409 and r.json()["code"] == "out_of_stock"
    left = await shop.run(lambda db: db.execute(select(Code.state).where(Code.product_id == s.product_id)))
    assert sorted(left.scalars()) == ["available", "available"]


async def test_void_returns_codes_to_stock(shop):
    s = await shop.stock(3)
    g = (
        await shop.post("/api/v1/grants", body(s.product_id, quantity=2, phone=PHONE, channel="none"))
    ).json()
    r = await shop.post(f"/api/v1/grants/{g['id']}/void", {"reason": "wrong product"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "voided" and out["void_reason"] == "wrong product"
    assert {c["status"] for c in out["codes"]} == {"voided"}
    rows = await shop.run(lambda db: db.execute(select(Code).where(Code.product_id == s.product_id)))
    codes = list(rows.scalars())
    assert {c.state for c in codes} == {"available"} and {c.purpose for c in codes} == {None}
    again = await shop.post(f"/api/v1/grants/{g['id']}/void", {"reason": "again"})
    assert again.status_code == 409 and again.json()["code"] == "grant_not_voidable"
    events = await shop.run(lambda db: db.execute(select(Event.type).where(Event.object_id == g["id"])))
    assert set(events.scalars()) == {"grant.created", "grant.voided"}
    # the codes can be granted again
    again = await shop.post("/api/v1/grants", body(s.product_id, quantity=3, phone=PHONE, channel="none"))
    assert again.status_code == 201


async def test_void_gives_reusable_codes_their_uses_back(shop):
    s = await shop.stock(1, kind="reusable_code", uses=3, with_pin=False)
    g = (
        await shop.post("/api/v1/grants", body(s.product_id, quantity=3, phone=PHONE, channel="none"))
    ).json()
    assert len(g["codes"]) == 3 and len({c["code_id"] for c in g["codes"]}) == 1
    code = await shop.run(lambda db: db.execute(select(Code.state, Code.uses_left)))
    assert list(code.all()) == [("issued", 0)]
    r = await shop.post(f"/api/v1/grants/{g['id']}/void", {"reason": "duplicate"})
    assert r.status_code == 200
    code = await shop.run(lambda db: db.execute(select(Code.state, Code.uses_left)))
    assert list(code.all()) == [("available", 3)]


async def test_delivered_grant_cannot_be_voided(shop):
    s = await shop.stock(1)
    g = (await shop.post("/api/v1/grants", body(s.product_id, phone=PHONE, channel="none"))).json()

    async def deliver(db):
        await db.execute(update(Grant).where(Grant.id == uuid.UUID(g["id"])).values(status="delivered"))

    await shop.run(deliver)
    r = await shop.post(f"/api/v1/grants/{g['id']}/void", {"reason": "too late"})
    assert r.status_code == 409 and r.json()["code"] == "grant_not_voidable"
    r = await shop.post(f"/api/v1/grants/{g['id']}/void", {"reason": ""})
    assert r.status_code in (409, 422)


async def test_a_grant_whose_codes_were_revealed_is_not_returned_to_stock(shop):
    """Plaintext that left kaquan must never be handed out again: void is refused, the code stays issued."""
    s = await shop.stock(2)
    g = (
        await shop.post("/api/v1/grants", body(s.product_id, phone=PHONE, channel="none"), reveal=True)
    ).json()
    assert g["revealed"] is True and g["status"] == "created"
    r = await shop.post(f"/api/v1/grants/{g['id']}/void", {"reason": "changed our mind"})
    assert r.status_code == 409 and r.json()["code"] == "grant_codes_revealed"
    states = await shop.run(lambda db: db.execute(select(Code.state).where(Code.id == uuid.UUID(g["codes"][0]["code_id"]))))
    assert list(states.scalars()) == ["issued"]
    masked = (await shop.post("/api/v1/grants", body(s.product_id, phone=PHONE, channel="none"))).json()
    assert (await shop.post(f"/api/v1/grants/{masked['id']}/void", {"reason": "unseen"})).status_code == 200


async def test_list_get_and_filters(shop):
    s = await shop.stock(6)
    a = (
        await shop.post("/api/v1/grants", body(s.product_id, phone=PHONE, campaign_ref="C1", channel="none"))
    ).json()
    b = (
        await shop.post(
            "/api/v1/grants", body(s.product_id, external_id="m-2", campaign_ref="C2", channel="none")
        )
    ).json()
    c = (await shop.post("/api/v1/grants", body(s.product_id, phone="13812345678", channel="none"))).json()
    assert c["member"]["id"] == a["member"]["id"]  # the same phone is the same member
    await shop.post(f"/api/v1/grants/{b['id']}/void", {"reason": "test"})
    r = await shop.get("/api/v1/grants", campaign_ref="C1")
    assert [g["id"] for g in r.json()["items"]] == [a["id"]]
    r = await shop.get("/api/v1/grants", member=a["member"]["id"])
    assert [g["id"] for g in r.json()["items"]] == [c["id"], a["id"]]
    r = await shop.get("/api/v1/grants", status="voided")
    assert [g["id"] for g in r.json()["items"]] == [b["id"]]
    page1 = (await shop.get("/api/v1/grants", limit=2)).json()
    page2 = (await shop.get("/api/v1/grants", limit=2, cursor=page1["next_cursor"])).json()
    assert [g["id"] for g in page1["items"] + page2["items"]] == [c["id"], b["id"], a["id"]]
    assert page2["next_cursor"] is None
    r = await shop.get("/api/v1/grants", status="bogus")
    assert r.status_code == 422
    one = (await shop.get(f"/api/v1/grants/{a['id']}")).json()
    assert one["ref"] == a["ref"] and one["codes"] == a["codes"]
    assert (await shop.get(f"/api/v1/grants/{uuid.uuid4()}")).status_code == 404


async def test_the_list_shows_each_grant_as_its_own_page_does_in_a_fixed_number_of_queries(shop):
    s = await shop.stock(12)
    for n in range(4):
        who = {"phone": f"1381234000{n}"} if n % 2 else {"external_id": f"list-{n}"}
        made = await shop.post("/api/v1/grants", body(s.product_id, quantity=n + 1, channel="none", **who))
        assert made.status_code == 201, made.text
    listed = (await shop.get("/api/v1/grants")).json()["items"]
    assert sorted(len(g["codes"]) for g in listed) == [1, 2, 3, 4]
    for g in listed:
        assert g == (await shop.get(f"/api/v1/grants/{g['id']}")).json()

    async def statements_for(limit: int) -> int:
        async def page(db):
            seen: list[str] = []
            conn = (await db.connection()).sync_connection  # this session's only: workers run beside it
            listener = lambda *args: seen.append(args[2])  # noqa: E731 - (conn, cursor, statement, ...)
            event.listen(conn, "before_cursor_execute", listener)
            try:
                await services.grant_page(db, await services.list_grants(db, limit=limit), limit)
            finally:
                event.remove(conn, "before_cursor_execute", listener)
            return sum(1 for sql in seen if sql.lstrip().upper().startswith("SELECT"))

        return await shop.run(page)

    assert await statements_for(1) == await statements_for(4)  # not one query per grant


async def test_scopes_are_enforced(shop, client, kernel, make_api_client):
    from tests.conftest import TenantHandle

    s = await shop.stock(1)
    handle = TenantHandle(shop.id, "x", "x", "x", "x")
    reader = await make_api_client(handle, ["grants:read"])
    r = await client.post(
        "/api/v1/grants",
        json=body(s.product_id, phone=PHONE),
        headers={**reader.headers, "Idempotency-Key": "k-scope"},
    )
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"
    assert (await client.get("/api/v1/grants")).status_code == 401


async def test_isolation_between_tenants(shop, other_shop):
    s = await shop.stock(2)
    g = (await shop.post("/api/v1/grants", body(s.product_id, phone=PHONE, channel="none"))).json()
    assert (await other_shop.get(f"/api/v1/grants/{g['id']}")).status_code == 404
    r = await other_shop.post(f"/api/v1/grants/{g['id']}/void", {"reason": "steal"})
    assert r.status_code == 404
    assert (await other_shop.get("/api/v1/grants")).json()["items"] == []
    assert (await other_shop.get(f"/api/v1/members/{g['member']['id']}")).status_code == 404
    r = await other_shop.post("/api/v1/grants", body(s.product_id, phone=PHONE))
    assert r.status_code == 404 and r.json()["code"] == "product_not_found"
    # tenant B granting to the same phone gets its own member
    b = await other_shop.stock(1)
    bg = (await other_shop.post("/api/v1/grants", body(b.product_id, phone=PHONE, channel="none"))).json()
    assert bg["member"]["id"] != g["member"]["id"]
    assert (await shop.get(f"/api/v1/grants/{bg['id']}")).status_code == 404


async def test_nothing_secret_at_rest(shop, owner_engine):
    s = await shop.stock(1)
    r = await shop.post(
        "/api/v1/grants", body(s.product_id, phone="13987654321", email="Zoe@Example.com"), reveal=True
    )
    g = r.json()
    assert g["channel"] == "sms" and g["contact_masked"] == "139****4321"
    number = g["codes"][0]["number"]
    async with owner_engine.connect() as conn:
        for table in ("members", "grants", "grant_items", "outbox", "events", "audit_events"):
            rows = (await conn.execute(text(f"select * from {table}"))).all()
            dump = repr(rows)
            assert "13987654321" not in dump and number not in dump, table
    payloads = await shop.run(
        lambda db: db.execute(
            select(OutboxMessage.payload).where(OutboxMessage.business_key == f"deliver_grant:{g['id']}")
        )
    )
    assert list(payloads.scalars()) == [{"grant_id": g["id"]}]
    items = await shop.run(
        lambda db: db.execute(select(GrantItem).where(GrantItem.grant_id == uuid.UUID(g["id"])))
    )
    assert [i.member_id for i in items.scalars()] == [uuid.UUID(g["member"]["id"])]


async def test_default_rules_do_not_limit_welfare_grants_but_saved_grant_rules_do(shop):
    s = await shop.stock(20)
    for _ in range(3):  # 3 × 4 codes to one employee: more than the member limit that guards claims
        r = await shop.post("/api/v1/grants", body(s.product_id, quantity=4, external_id="emp-7", channel="none"))
        assert r.status_code == 201, r.text
    rules = await shop.get("/api/v1/risk/rules")
    assert rules.status_code == 200, rules.text
    assert all(rule["action"] != "grant" for rule in rules.json()["limits"])
    r = await shop.client.put(
        "/api/v1/risk/rules",
        headers=shop.headers,
        json={"limits": [{"action": "grant", "dimension": "member", "window": "month", "limit": 5}]},
    )
    assert r.status_code == 200, r.text
    # counted from when the rule was saved: 5 more fit this month, the 6th is refused
    r = await shop.post("/api/v1/grants", body(s.product_id, quantity=5, external_id="emp-7", channel="none"))
    assert r.status_code == 201, r.text
    r = await shop.post("/api/v1/grants", body(s.product_id, quantity=1, external_id="emp-7", channel="none"))
    assert r.status_code == 429 and r.json()["reason"] == "limit_member_month", r.text
