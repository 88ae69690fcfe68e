"""Whose unit a redemption uses: ``member_id`` / ``grant_item_id`` on a reusable code shared by many
members (each holds a grant item of the same code), on single-use codes and stored-value cards; a clear
``404 holder_not_found`` when the member holds no such unit; tenant isolation; and, on PostgreSQL,
concurrent redeemers of one shared code each taking their own item exactly once."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from core.db.context import tenant_context
from core.grants.models import GrantItem
from core.redemption.models import CodeAccount
from tests.integration.redemption.helpers import code_state, issued_codes

URL = "/api/v1/redemptions"


@dataclass
class Holder:
    member_id: str
    item_id: str


@dataclass
class Shared:
    product_id: uuid.UUID
    number: str
    pin: str | None
    code_id: uuid.UUID
    holders: list[Holder]


async def _grant(client: Any, headers: dict[str, str], product_id: uuid.UUID, external_id: str) -> Holder:
    r = await client.post(
        "/api/v1/grants",
        json={"product_id": str(product_id), "external_id": external_id, "channel": "none"},
        headers={**headers, "Idempotency-Key": secrets.token_hex(8)},
    )
    assert r.status_code == 201, r.text
    grant = r.json()
    assert len(grant["codes"]) == 1
    return Holder(grant["member"]["id"], grant["codes"][0]["item_id"])


async def _shared_code(
    client: Any, kernel: Any, tenant_id: uuid.UUID, headers: dict[str, str], members: int, **stock: Any
) -> Shared:
    """One code granted one unit at a time to ``members`` members (a reusable code: the same code)."""
    iss = await issued_codes(kernel, tenant_id, 1, allocate_count=0, **stock)
    holders = [
        await _grant(client, headers, iss.product_id, f"m-{i}-{secrets.token_hex(3)}") for i in range(members)
    ]
    return Shared(iss.product_id, iss.numbers[0], iss.pins[0], iss.code_ids[0], holders)


async def _statuses(kernel: Any, tenant_id: uuid.UUID, code_id: uuid.UUID) -> dict[str, str]:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            rows = await db.execute(
                select(GrantItem.id, GrantItem.status).where(GrantItem.code_id == code_id)
            )
            return {str(i): s for i, s in rows.all()}


async def _uses(kernel: Any, tenant_id: uuid.UUID, code_id: uuid.UUID) -> int:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return int(await db.scalar(select(CodeAccount.uses).where(CodeAccount.code_id == code_id)) or 0)


async def test_shared_reusable_code_uses_the_named_members_item(client, kernel, make_tenant, make_api_client):
    t = await make_tenant()
    api = await make_api_client(t)
    s = await _shared_code(
        client, kernel, t.id, api.headers, 3, kind="reusable_code", with_pin=False, uses=3, max_uses=3
    )
    a, b, c = s.holders
    statuses = await _statuses(kernel, t.id, s.code_id)
    assert len(statuses) == 3 and set(statuses.values()) == {"held"}  # three members, one code

    v = await client.post(
        f"{URL}/validate", json={"code": s.number, "member_id": b.member_id}, headers=api.headers
    )
    assert v.status_code == 200, v.text
    assert v.json()["member_id"] == b.member_id and v.json()["grant_item_id"] == b.item_id
    assert v.json()["uses_remaining"] == 3

    r = await client.post(URL, json={"code": s.number, "member_id": c.member_id}, headers=api.headers)
    assert r.status_code == 201, r.text
    by_c = r.json()
    assert by_c["member_id"] == c.member_id and by_c["grant_item_id"] == c.item_id and by_c["use_number"] == 1
    assert await _statuses(kernel, t.id, s.code_id) == {
        a.item_id: "held",
        b.item_id: "held",
        c.item_id: "redeemed",
    }

    # the same member again: no unit left for them, whatever the other holders still have
    again = await client.post(
        URL,
        json={"code": s.number, "member_id": c.member_id},
        headers={**api.headers, "Accept-Language": "en"},
    )
    assert again.status_code == 404, again.text
    problem = again.json()
    assert problem["code"] == "holder_not_found" and "member holds no unredeemed unit" in problem["detail"]
    assert [e["field"] for e in problem["errors"]] == ["member_id"]
    assert await _uses(kernel, t.id, s.code_id) == 1  # the refused attempt used nothing
    v = await client.post(
        f"{URL}/validate", json={"code": s.number, "member_id": c.member_id}, headers=api.headers
    )
    assert v.status_code == 404 and v.json()["code"] == "holder_not_found"

    # without a member: the oldest unredeemed item (today's behaviour)
    r = await client.post(URL, json={"code": s.number}, headers=api.headers)
    assert (
        r.status_code == 201
        and r.json()["member_id"] == a.member_id
        and r.json()["grant_item_id"] == a.item_id
    )

    # by grant item
    r = await client.post(URL, json={"code": s.number, "grant_item_id": b.item_id}, headers=api.headers)
    assert r.status_code == 201 and r.json()["member_id"] == b.member_id and r.json()["use_number"] == 3
    assert await code_state(kernel, t.id, s.code_id) == "redeemed"
    r = await client.post(URL, json={"code": s.number, "member_id": b.member_id}, headers=api.headers)
    assert r.status_code == 409 and r.json()["code"] == "uses_exhausted"  # used up beats "no unit left"

    # rolling back C's use gives C's unit back, and C can use it again
    back = await client.post(
        f"{URL}/{by_c['id']}/rollback", json={"reason": "wrong till"}, headers=api.headers
    )
    assert back.status_code == 200, back.text
    assert (await _statuses(kernel, t.id, s.code_id))[c.item_id] == "held"
    r = await client.post(URL, json={"code": s.number, "member_id": a.member_id}, headers=api.headers)
    assert r.status_code == 404 and r.json()["code"] == "holder_not_found"
    r = await client.post(URL, json={"code": s.number, "member_id": c.member_id}, headers=api.headers)
    assert r.status_code == 201 and r.json()["grant_item_id"] == c.item_id


async def test_single_use_code_and_stored_value_card_need_the_right_holder(
    client, kernel, make_tenant, make_api_client
):
    t = await make_tenant()
    api = await make_api_client(t)
    single = await _shared_code(client, kernel, t.id, api.headers, 1)
    other = await _shared_code(client, kernel, t.id, api.headers, 1)
    owner, stranger = single.holders[0], other.holders[0]
    base = {"code": single.number, "pin": single.pin}
    for extra, field in [
        ({"member_id": stranger.member_id}, "member_id"),  # a member of this tenant who holds another code
        ({"member_id": str(uuid.uuid4())}, "member_id"),  # no such member
        ({"grant_item_id": stranger.item_id}, "grant_item_id"),  # an item of another code
        ({"member_id": owner.member_id, "grant_item_id": stranger.item_id}, "grant_item_id"),
    ]:
        r = await client.post(URL, json={**base, **extra}, headers=api.headers)
        assert r.status_code == 404, (extra, r.text)
        assert r.json()["code"] == "holder_not_found" and r.json()["errors"][0]["field"] == field
    assert await code_state(kernel, t.id, single.code_id) == "issued"
    r = await client.post(
        URL, json={**base, "member_id": owner.member_id, "grant_item_id": owner.item_id}, headers=api.headers
    )
    assert r.status_code == 201 and r.json()["member_id"] == owner.member_id
    assert await _statuses(kernel, t.id, single.code_id) == {owner.item_id: "redeemed"}
    r = await client.post(URL, json={**base, "member_id": owner.member_id}, headers=api.headers)
    assert r.status_code == 409 and r.json()["code"] == "already_redeemed"  # not "no unit": it was used

    card = await _shared_code(client, kernel, t.id, api.headers, 1, kind="stored_value")  # 1000 fen
    holder = card.holders[0]
    spend = {"code": card.number, "pin": card.pin, "amount": 400}
    r = await client.post(URL, json={**spend, "member_id": stranger.member_id}, headers=api.headers)
    assert r.status_code == 404 and r.json()["code"] == "holder_not_found"
    r = await client.post(URL, json={**spend, "member_id": holder.member_id}, headers=api.headers)
    assert (
        r.status_code == 201
        and r.json()["grant_item_id"] == holder.item_id
        and r.json()["balance_after"] == 600
    )
    assert await _statuses(kernel, t.id, card.code_id) == {holder.item_id: "held"}  # balance left: still held
    r = await client.post(
        URL, json={**spend, "amount": 600, "member_id": holder.member_id}, headers=api.headers
    )
    assert r.status_code == 201 and r.json()["balance_after"] == 0
    assert await _statuses(kernel, t.id, card.code_id) == {holder.item_id: "redeemed"}
    ledger = (await client.get(f"/api/v1/stored-value/{card.code_id}/ledger", headers=api.headers)).json()
    assert [(e["kind"], e["balance_after"]) for e in ledger["entries"]] == [
        ("opening", 1000),
        ("redeem", 600),
        ("redeem", 0),
    ]

    r = await client.post(URL, json={**base, "member_id": "not-a-uuid"}, headers=api.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "member_id"


async def test_holders_of_another_tenant_are_not_found(client, kernel, make_tenant, make_api_client):
    a, b = await make_tenant(), await make_tenant()
    api_a, api_b = await make_api_client(a), await make_api_client(b)
    s_a = await _shared_code(
        client, kernel, a.id, api_a.headers, 1, kind="reusable_code", with_pin=False, uses=2, max_uses=2
    )
    s_b = await _shared_code(
        client, kernel, b.id, api_b.headers, 1, kind="reusable_code", with_pin=False, uses=2, max_uses=2
    )
    # A's code with B's member or B's item: B's rows do not exist for A
    for extra in ({"member_id": s_b.holders[0].member_id}, {"grant_item_id": s_b.holders[0].item_id}):
        r = await client.post(URL, json={"code": s_a.number, **extra}, headers=api_a.headers)
        assert r.status_code == 404 and r.json()["code"] == "holder_not_found", r.text
    # B cannot reach A's code, even naming A's member
    r = await client.post(
        URL, json={"code": s_a.number, "member_id": s_a.holders[0].member_id}, headers=api_b.headers
    )
    assert r.status_code == 404 and r.json()["code"] == "code_not_found"
    assert await _statuses(kernel, a.id, s_a.code_id) == {s_a.holders[0].item_id: "held"}
    assert await _statuses(kernel, b.id, s_b.code_id) == {s_b.holders[0].item_id: "held"}


async def test_concurrent_holders_of_one_shared_code_each_use_their_own_item(
    client, kernel, test_env, make_tenant, make_api_client
):
    if test_env.backend != "postgresql":
        pytest.skip("concurrency is tested on PostgreSQL (SQLite serialises writers)")
    t = await make_tenant()
    api = await make_api_client(t)
    s = await _shared_code(
        client, kernel, t.id, api.headers, 6, kind="reusable_code", with_pin=False, uses=6, max_uses=6
    )
    # every member twice at once: each gets exactly one use; the other attempt is told they hold nothing
    # left, or (once every use is gone) that the code is used up
    bodies = [
        {"code": s.number, "member_id": h.member_id, "terminal": f"T{i}"} for i, h in enumerate(s.holders)
    ]
    answers = await asyncio.gather(*[client.post(URL, json=b, headers=api.headers) for b in bodies + bodies])
    assert sum(r.status_code == 201 for r in answers) == 6, [r.text for r in answers]
    refused = Counter(r.json()["code"] for r in answers if r.status_code != 201)
    assert sum(refused.values()) == 6 and set(refused) <= {"holder_not_found", "uses_exhausted"}, refused
    won = [r.json() for r in answers if r.status_code == 201]
    assert sorted(w["use_number"] for w in won) == [1, 2, 3, 4, 5, 6]
    assert {(w["member_id"], w["grant_item_id"]) for w in won} == {
        (h.member_id, h.item_id) for h in s.holders
    }
    assert set((await _statuses(kernel, t.id, s.code_id)).values()) == {"redeemed"}
    assert await _uses(kernel, t.id, s.code_id) == 6
    assert await code_state(kernel, t.id, s.code_id) == "redeemed"
