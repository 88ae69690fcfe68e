"""Redemption over the API: redeem once, validate without redeeming, number + PIN pairs, forgiving input,
refusals with stable codes, reusable use counts, stored-value spends with a ledger, rollback and its window,
settings, listing, audit and events, and tenant isolation."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select, update

from core.audit.models import AuditEvent
from core.db.context import tenant_context
from core.events.models import Event
from core.inventory.models import Code
from core.redemption.models import CodeAccount, LedgerEntry
from tests.integration.redemption.helpers import age_redemption, code_state, issued_codes

URL = "/api/v1/redemptions"


async def _setup(make_tenant, make_api_client, scopes: list[str] | None = None):
    t = await make_tenant()
    api = await make_api_client(t, scopes or ["redemptions:read", "redemptions:write"])
    return t, api


async def test_redeem_once_then_already_redeemed_with_when_and_where(
    client, kernel, make_tenant, make_api_client
):
    t, api = await _setup(make_tenant, make_api_client)
    iss = await issued_codes(kernel, t.id, 1)
    body = {
        "code": iss.numbers[0],
        "pin": iss.pins[0],
        "store": "Shop 12",
        "terminal": "POS-3",
        "reference": "R1",
    }
    r = await client.post(URL, json=body, headers=api.headers)
    assert r.status_code == 201, r.text
    red = r.json()
    assert red["status"] == "redeemed" and red["store"] == "Shop 12" and red["terminal"] == "POS-3"
    assert red["masked"].endswith(iss.numbers[0][-4:]) and iss.numbers[0] not in r.text
    assert red["client_id"] == str(api.client_pk)
    assert await code_state(kernel, t.id, iss.code_ids[0]) == "redeemed"

    again = await client.post(
        URL, json={**body, "store": "Shop 99"}, headers={**api.headers, "Accept-Language": "en"}
    )
    assert again.status_code == 409
    problem = again.json()
    assert problem["code"] == "already_redeemed"
    assert "Shop 12 / POS-3" in problem["detail"] and "Already redeemed at" in problem["detail"]
    assert problem["store"] == "Shop 12" and problem["terminal"] == "POS-3"
    assert problem["redemption_id"] == red["id"] and problem["redeemed_at"]
    zh = await client.post(URL, json=body, headers={**api.headers, "Accept-Language": "zh-CN"})
    assert "已于" in zh.json()["detail"]


async def test_validate_changes_nothing(client, kernel, make_tenant, make_api_client):
    t, api = await _setup(make_tenant, make_api_client)
    iss = await issued_codes(kernel, t.id, 1)
    body = {"code": iss.numbers[0], "pin": iss.pins[0]}
    for _ in range(2):
        r = await client.post(f"{URL}/validate", json=body, headers=api.headers)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["valid"] is True and out["code_id"] == str(iss.code_ids[0]) and out["kind"] == "code"
    assert await code_state(kernel, t.id, iss.code_ids[0]) == "issued"
    listed = await client.get(URL, headers=api.headers)
    assert listed.json()["items"] == []
    assert (await client.post(URL, json=body, headers=api.headers)).status_code == 201
    r = await client.post(f"{URL}/validate", json=body, headers=api.headers)
    assert r.status_code == 409 and r.json()["code"] == "already_redeemed"


async def test_number_and_pin_pairs(client, kernel, make_tenant, make_api_client):
    t, api = await _setup(make_tenant, make_api_client)
    iss = await issued_codes(kernel, t.id, 2)
    a, b = iss.numbers
    missing = await client.post(URL, json={"code": a}, headers=api.headers)
    assert missing.status_code == 422 and missing.json()["code"] == "pin_required"
    wrong = await client.post(URL, json={"code": a, "pin": iss.pins[1]}, headers=api.headers)  # b's PIN
    assert wrong.status_code == 422 and wrong.json()["code"] == "pin_mismatch"
    assert iss.pins[1] not in wrong.text
    assert await code_state(kernel, t.id, iss.code_ids[0]) == "issued"
    ok = await client.post(URL, json={"code": a, "pin": f" {iss.pins[0]} "}, headers=api.headers)
    assert ok.status_code == 201, ok.text
    ok_b = await client.post(URL, json={"code": b, "pin": iss.pins[1]}, headers=api.headers)
    assert ok_b.status_code == 201


async def test_scanned_forms_are_forgiven(client, kernel, make_tenant, make_api_client):
    t, api = await _setup(make_tenant, make_api_client)
    iss = await issued_codes(kernel, t.id, 3, with_pin=False)
    n0, n1, n2 = iss.numbers  # stored as "CARD" + 12 hex digits
    forms = [f"  {n0.lower()} ", f"{n1[:4]} {n1[4:10]}-{n1[10:]}".replace("-", " "), f"\u3000{n2}\t"]
    for form in forms:
        r = await client.post(URL, json={"code": form}, headers=api.headers)
        assert r.status_code == 201, (form, r.text)
    unknown = await client.post(URL, json={"code": "NOPE-NOPE-NOPE"}, headers=api.headers)
    assert unknown.status_code == 404 and unknown.json()["code"] == "code_not_found"


async def test_generated_code_typed_without_dashes(client, kernel, make_tenant, make_api_client):
    from core.inventory import codegen
    from core.inventory.vault import seal

    t, api = await _setup(make_tenant, make_api_client)
    iss = await issued_codes(kernel, t.id, 1, with_pin=False)
    generated = codegen.generate()  # four groups of four symbols, then the check symbol
    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            sealed = seal(await kernel.keys.cipher(db), generated)
            await db.execute(
                update(Code)
                .where(Code.id == iss.code_ids[0])
                .values(digest=sealed.digest, secret=sealed.secret, last4=sealed.last4)
            )
    typed = generated.replace("-", "").lower()
    r = await client.post(URL, json={"code": typed}, headers=api.headers)
    assert r.status_code == 201, r.text


async def test_refusals_have_stable_codes(client, kernel, make_tenant, make_api_client):
    t, api = await _setup(make_tenant, make_api_client)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    stocked = await issued_codes(kernel, t.id, 3, allocate_count=0, with_pin=False)
    r = await client.post(URL, json={"code": stocked.numbers[0]}, headers=api.headers)
    assert r.status_code == 409 and r.json()["code"] == "code_not_issued"
    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            await db.execute(update(Code).where(Code.id == stocked.code_ids[1]).values(state="voided"))
            await db.execute(
                update(Code).where(Code.id == stocked.code_ids[2]).values(state="issued", expires_at=past)
            )
    r = await client.post(URL, json={"code": stocked.numbers[1]}, headers=api.headers)
    assert r.status_code == 409 and r.json()["code"] == "code_voided"
    r = await client.post(URL, json={"code": stocked.numbers[2]}, headers=api.headers)
    assert r.status_code == 409 and r.json()["code"] == "code_expired"
    r = await client.post(URL, json={"code": stocked.numbers[2], "amount": 5}, headers=api.headers)
    assert r.status_code == 422 and r.json()["code"] == "amount_not_applicable"
    r = await client.post(URL, json={"code": ""}, headers=api.headers)
    assert r.status_code in (400, 422)
    r = await client.post(URL, json={"code": "X", "unknown": 1}, headers=api.headers)
    assert r.status_code in (400, 422)


async def test_scopes_are_required(client, kernel, make_tenant, make_api_client):
    t, api = await _setup(make_tenant, make_api_client, ["redemptions:read"])
    r = await client.post(URL, json={"code": "X"}, headers=api.headers)
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"
    other = await make_api_client(t, ["inventory:read"])
    assert (await client.get(URL, headers=other.headers)).status_code == 403


async def test_reusable_code_counts_uses(client, kernel, make_tenant, make_api_client):
    t, api = await _setup(make_tenant, make_api_client)
    iss = await issued_codes(
        kernel, t.id, 1, kind="reusable_code", with_pin=False, uses=3, max_uses=3, allocate_count=2
    )  # 2 of the 3 uses handed out
    code = iss.numbers[0]
    v = await client.post(f"{URL}/validate", json={"code": code}, headers=api.headers)
    assert v.json()["uses"] == 0 and v.json()["uses_remaining"] == 2
    first = await client.post(URL, json={"code": code}, headers=api.headers)
    second = await client.post(URL, json={"code": code}, headers=api.headers)
    assert first.json()["use_number"] == 1 and second.json()["use_number"] == 2
    third = await client.post(URL, json={"code": code}, headers=api.headers)
    assert third.status_code == 409 and third.json()["code"] == "uses_exhausted"
    assert third.json()["uses"] == 2
    # the third use is handed out: it can be redeemed, and then the code is used up
    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            from core.inventory.allocation import allocate

            await allocate(db, iss.product_id, 1, "test")
    last = await client.post(URL, json={"code": code}, headers=api.headers)
    assert last.status_code == 201 and last.json()["use_number"] == 3
    assert await code_state(kernel, t.id, iss.code_ids[0]) == "redeemed"
    r = await client.post(URL, json={"code": code}, headers=api.headers)
    assert r.json()["code"] == "uses_exhausted"
    back = await client.post(
        f"{URL}/{second.json()['id']}/rollback", json={"reason": "wrong item"}, headers=api.headers
    )
    assert back.status_code == 200 and back.json()["status"] == "rolled_back"
    assert await code_state(kernel, t.id, iss.code_ids[0]) == "issued"
    again = await client.post(URL, json={"code": code}, headers=api.headers)
    assert again.status_code == 201 and again.json()["use_number"] == 3


async def test_stored_value_partial_spends_and_ledger(client, kernel, make_tenant, make_api_client):
    t, api = await _setup(make_tenant, make_api_client)
    iss = await issued_codes(kernel, t.id, 1, kind="stored_value")  # face value 1000 fen
    body = {"code": iss.numbers[0], "pin": iss.pins[0], "store": "S1"}
    need = await client.post(URL, json=body, headers=api.headers)
    assert need.status_code == 422 and need.json()["code"] == "amount_required"
    v = await client.post(f"{URL}/validate", json={**body, "amount": 100}, headers=api.headers)
    assert v.json()["balance"] == 1000
    a = await client.post(URL, json={**body, "amount": 300}, headers=api.headers)
    assert a.status_code == 201 and a.json()["balance_after"] == 700 and a.json()["amount"] == 300
    too_much = await client.post(URL, json={**body, "amount": 701}, headers=api.headers)
    assert too_much.status_code == 409 and too_much.json()["code"] == "insufficient_balance"
    assert too_much.json()["balance"] == 700
    b = await client.post(URL, json={**body, "amount": 700}, headers=api.headers)
    assert b.json()["balance_after"] == 0
    assert await code_state(kernel, t.id, iss.code_ids[0]) == "redeemed"
    empty = await client.post(URL, json={**body, "amount": 1}, headers=api.headers)
    assert empty.json()["code"] == "insufficient_balance"
    back = await client.post(
        f"{URL}/{a.json()['id']}/rollback", json={"reason": "refund"}, headers=api.headers
    )
    assert back.status_code == 200
    assert await code_state(kernel, t.id, iss.code_ids[0]) == "issued"
    ledger = await client.get(f"/api/v1/stored-value/{iss.code_ids[0]}/ledger", headers=api.headers)
    assert ledger.status_code == 200, ledger.text
    led = ledger.json()
    assert led["initial_balance"] == 1000 and led["balance"] == 300
    assert [(e["kind"], e["delta"], e["balance_after"]) for e in led["entries"]] == [
        ("opening", 1000, 1000),
        ("redeem", -300, 700),
        ("redeem", -700, 0),
        ("rollback", 300, 300),
    ]
    not_sv = await issued_codes(kernel, t.id, 1)
    r = await client.get(f"/api/v1/stored-value/{not_sv.code_ids[0]}/ledger", headers=api.headers)
    assert r.status_code == 422 and r.json()["code"] == "not_stored_value"


async def test_balance_check_constraint_refuses_negative(kernel, make_tenant):
    import pytest
    from sqlalchemy.exc import IntegrityError

    t = await make_tenant()
    iss = await issued_codes(kernel, t.id, 1, kind="stored_value")
    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            db.add(CodeAccount(code_id=iss.code_ids[0], uses=0, balance=5, initial_balance=5))
        with pytest.raises(IntegrityError):
            async with kernel.db.transaction() as db:
                await db.execute(
                    update(CodeAccount)
                    .where(CodeAccount.code_id == iss.code_ids[0])
                    .values(balance=CodeAccount.balance - 6)
                )


async def test_rollback_within_and_after_the_window(client, kernel, make_tenant, make_api_client):
    t, api = await _setup(make_tenant, make_api_client)
    iss = await issued_codes(kernel, t.id, 2, with_pin=False)
    first = (await client.post(URL, json={"code": iss.numbers[0]}, headers=api.headers)).json()
    second = (await client.post(URL, json={"code": iss.numbers[1]}, headers=api.headers)).json()
    no_reason = await client.post(f"{URL}/{first['id']}/rollback", json={"reason": " "}, headers=api.headers)
    assert no_reason.status_code == 422
    await age_redemption(kernel, t.id, uuid.UUID(first["id"]), 29)
    ok = await client.post(
        f"{URL}/{first['id']}/rollback", json={"reason": "customer changed mind"}, headers=api.headers
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["rollback_reason"] == "customer changed mind" and ok.json()["rolled_back_at"]
    assert await code_state(kernel, t.id, iss.code_ids[0]) == "issued"
    twice = await client.post(f"{URL}/{first['id']}/rollback", json={"reason": "again"}, headers=api.headers)
    assert twice.status_code == 409 and twice.json()["code"] == "already_rolled_back"
    # the code can be redeemed again after its rollback
    assert (await client.post(URL, json={"code": iss.numbers[0]}, headers=api.headers)).status_code == 201

    await age_redemption(kernel, t.id, uuid.UUID(second["id"]), 31)
    late = await client.post(f"{URL}/{second['id']}/rollback", json={"reason": "late"}, headers=api.headers)
    assert late.status_code == 409 and late.json()["code"] == "rollback_window_passed"
    assert await code_state(kernel, t.id, iss.code_ids[1]) == "redeemed"
    # a longer window (tenant setting) makes it possible again
    r = await client.put(
        "/api/v1/redemption-settings", json={"rollback_window_minutes": 120}, headers=api.headers
    )
    assert r.status_code == 200 and r.json() == {"rollback_window_minutes": 120}
    assert (await client.get("/api/v1/redemption-settings", headers=api.headers)).json()[
        "rollback_window_minutes"
    ] == 120
    ok2 = await client.post(
        f"{URL}/{second['id']}/rollback", json={"reason": "late but allowed"}, headers=api.headers
    )
    assert ok2.status_code == 200
    bad = await client.put(
        "/api/v1/redemption-settings", json={"rollback_window_minutes": -1}, headers=api.headers
    )
    assert bad.status_code in (400, 422)


async def test_audit_and_events(client, kernel, make_tenant, make_api_client):
    t, api = await _setup(make_tenant, make_api_client)
    iss = await issued_codes(kernel, t.id, 1)
    red = (
        await client.post(
            URL, json={"code": iss.numbers[0], "pin": iss.pins[0], "store": "A"}, headers=api.headers
        )
    ).json()
    await client.post(f"{URL}/{red['id']}/rollback", json={"reason": "oops"}, headers=api.headers)
    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            events = (
                (
                    await db.execute(
                        select(Event).where(Event.object_id == str(iss.code_ids[0])).order_by(Event.id)
                    )
                )
                .scalars()
                .all()
            )
            audits = (
                (
                    await db.execute(
                        select(AuditEvent)
                        .where(AuditEvent.object_id == str(iss.code_ids[0]))
                        .order_by(AuditEvent.txid, AuditEvent.id)
                    )
                )
                .scalars()
                .all()
            )
    assert [e.type for e in events] == ["code.redeemed", "code.redemption_rolled_back"]
    assert events[0].data["redemption_id"] == red["id"] and events[0].data["store"] == "A"
    assert {"code.redeemed", "code.redemption_rolled_back"} <= {a.action for a in audits}
    assert all(iss.numbers[0] not in str(e.data) and iss.pins[0] not in str(e.data) for e in events)


async def test_list_filters(client, kernel, make_tenant, make_api_client):
    t, api = await _setup(make_tenant, make_api_client)
    iss = await issued_codes(kernel, t.id, 3, with_pin=False)
    for number, store in zip(iss.numbers, ["North", "North", "South"], strict=True):
        assert (
            await client.post(URL, json={"code": number, "store": store}, headers=api.headers)
        ).status_code == 201
    everything = (await client.get(URL, headers=api.headers)).json()["items"]
    assert len(everything) == 3 and everything[0]["store"] == "South"  # newest first
    north = (await client.get(URL, params={"store": "North"}, headers=api.headers)).json()["items"]
    assert len(north) == 2
    by_last4 = (await client.get(URL, params={"last4": iss.numbers[2][-4:]}, headers=api.headers)).json()[
        "items"
    ]
    assert [r["code_id"] for r in by_last4] == [str(iss.code_ids[2])]
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    assert (await client.get(URL, params={"since": future}, headers=api.headers)).json()["items"] == []
    page = (await client.get(URL, params={"limit": 2}, headers=api.headers)).json()
    rest = (await client.get(URL, params={"cursor": page["next_cursor"]}, headers=api.headers)).json()
    assert len(page["items"]) == 2 and len(rest["items"]) == 1 and rest["next_cursor"] is None
    bad = await client.get(URL, params={"status": "weird"}, headers=api.headers)
    assert bad.status_code == 422


async def test_grant_item_follows_redemption(client, kernel, make_tenant, make_api_client):
    from core.grants.models import Grant, GrantItem
    from core.members.models import Member

    t, api = await _setup(make_tenant, make_api_client)
    iss = await issued_codes(kernel, t.id, 1, with_pin=False)
    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            member = Member(external_id="m-1")
            db.add(member)
            await db.flush()
            grant = Grant(
                ref=f"G{uuid.uuid4().hex[:8]}", product_id=iss.product_id, quantity=1, member_id=member.id
            )
            db.add(grant)
            await db.flush()
            item = GrantItem(grant_id=grant.id, code_id=iss.code_ids[0], member_id=member.id)
            db.add(item)
            await db.flush()
            member_id, item_id = member.id, item.id

    async def item_status() -> str:
        with tenant_context(t.id):
            async with kernel.db.transaction() as db:
                return str(await db.scalar(select(GrantItem.status).where(GrantItem.id == item_id)))

    red = await client.post(URL, json={"code": iss.numbers[0]}, headers=api.headers)
    assert red.json()["member_id"] == str(member_id) and red.json()["grant_item_id"] == str(item_id)
    assert await item_status() == "redeemed"
    await client.post(f"{URL}/{red.json()['id']}/rollback", json={"reason": "x"}, headers=api.headers)
    assert await item_status() == "held"


async def test_isolation_between_tenants(client, kernel, make_tenant, make_api_client):
    a, api_a = await _setup(make_tenant, make_api_client)
    _, api_b = await _setup(make_tenant, make_api_client)
    iss = await issued_codes(kernel, a.id, 2, kind="stored_value", with_pin=False)
    red = (await client.post(URL, json={"code": iss.numbers[0], "amount": 10}, headers=api_a.headers)).json()
    for method, url, body in [
        ("POST", URL, {"code": iss.numbers[1], "amount": 10}),
        ("POST", f"{URL}/validate", {"code": iss.numbers[1], "amount": 10}),
        ("GET", f"{URL}/{red['id']}", None),
        ("POST", f"{URL}/{red['id']}/rollback", {"reason": "steal"}),
        ("GET", f"/api/v1/stored-value/{iss.code_ids[0]}/ledger", None),
    ]:
        r = await client.request(method, url, json=body, headers=api_b.headers)
        assert r.status_code == 404, (url, r.text)
    assert (await client.get(URL, headers=api_b.headers)).json()["items"] == []
    await client.put(
        "/api/v1/redemption-settings", json={"rollback_window_minutes": 5}, headers=api_b.headers
    )
    got: dict[str, Any] = (await client.get("/api/v1/redemption-settings", headers=api_a.headers)).json()
    assert got["rollback_window_minutes"] == 30
    assert (await client.get(f"{URL}/{red['id']}", headers=api_a.headers)).status_code == 200
    with tenant_context(a.id):
        async with kernel.db.transaction() as db:
            assert len((await db.execute(select(LedgerEntry))).scalars().all()) == 2


async def test_guessing_codes_locks_the_client_out(client, kernel, make_tenant, make_api_client):
    """Wrong codes and PINs count as failures that outlive the refused request; enough of them lock out."""
    from core.risk import engine

    t, api = await _setup(make_tenant, make_api_client)
    iss = await issued_codes(kernel, t.id, 1)
    for i in range(9):
        r = await client.post(URL, json={"code": f"GUESS-{i:04d}", "terminal": "T9"}, headers=api.headers)
        assert r.status_code == 404 and r.json()["code"] == "code_not_found"
    wrong_pin = await client.post(
        URL, json={"code": iss.numbers[0], "pin": "0000", "terminal": "T9"}, headers=api.headers
    )
    assert wrong_pin.json()["code"] == "pin_mismatch"  # the tenth failure
    await engine.settle()
    locked = await client.post(
        URL, json={"code": iss.numbers[0], "pin": iss.pins[0], "terminal": "T9"}, headers=api.headers
    )
    assert locked.status_code == 429 and locked.json()["code"] == "risk_refused", locked.text
    assert locked.json()["reason"] == "locked_out"
    assert await code_state(kernel, t.id, iss.code_ids[0]) == "issued"
    # validating is refused too: a locked-out guesser cannot probe codes through it
    probe = await client.post(f"{URL}/validate", json={"code": "GUESS-0100"}, headers=api.headers)
    assert probe.status_code == 429
