"""Exactly once under concurrency (PostgreSQL): one code, many redeemers; reusable use counts and
stored-value balances under concurrent spends; and a property test that a stored-value balance never goes
negative and always equals the face value minus the spends that stand, over random redeem/rollback runs."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from core.audit.models import AuditEvent
from core.db.context import tenant_context
from core.errors import DomainError
from core.events.models import Event
from core.redemption.checks import Caller
from core.redemption.models import CodeAccount, LedgerEntry, Redemption
from core.redemption.redeem import redeem
from core.redemption.rollback import rollback
from core.redemption.schemas import RedeemIn
from tests.integration.redemption.helpers import code_state, issued_codes

URL = "/api/v1/redemptions"
CONCURRENT = 20


def _postgres_only(test_env: Any) -> None:
    if test_env.backend != "postgresql":
        pytest.skip("concurrency is tested on PostgreSQL (SQLite serialises writers)")


async def _storm(client: Any, headers: dict[str, str], body: dict[str, Any]) -> list[Any]:
    return list(
        await asyncio.gather(
            *[
                client.post(URL, json={**body, "terminal": f"T{i}"}, headers=headers)
                for i in range(CONCURRENT)
            ]
        )
    )


async def test_concurrent_redemptions_of_one_code_exactly_one_wins(
    client, kernel, test_env, make_tenant, make_api_client
):
    _postgres_only(test_env)
    t = await make_tenant()
    api = await make_api_client(t, ["redemptions:read", "redemptions:write"])
    iss = await issued_codes(kernel, t.id, 1)
    answers = await _storm(client, api.headers, {"code": iss.numbers[0], "pin": iss.pins[0], "store": "S"})
    statuses = Counter(r.status_code for r in answers)
    assert statuses == {201: 1, 409: CONCURRENT - 1}, [
        r.text for r in answers if r.status_code not in (201, 409)
    ]
    winner = next(r.json() for r in answers if r.status_code == 201)
    for r in answers:
        if r.status_code == 409:
            p = r.json()
            assert p["code"] == "already_redeemed" and p["redemption_id"] == winner["id"]
            assert p["terminal"] == winner["terminal"] and p["store"] == "S"
    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            reds = (
                (await db.execute(select(Redemption).where(Redemption.code_id == iss.code_ids[0])))
                .scalars()
                .all()
            )
            # the losers wrote nothing: one event and one audit record, the winner's
            events = (
                await db.execute(
                    select(Event.data).where(
                        Event.object_id == str(iss.code_ids[0]), Event.type == "code.redeemed"
                    )
                )
            ).all()
            audited = await db.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.object_id == str(iss.code_ids[0]), AuditEvent.action == "code.redeemed")
            )
    assert len(reds) == 1
    assert [e.data["redemption_id"] for e in events] == [winner["id"]] and audited == 1
    assert await code_state(kernel, t.id, iss.code_ids[0]) == "redeemed"


async def test_concurrent_uses_of_a_reusable_code(client, kernel, test_env, make_tenant, make_api_client):
    _postgres_only(test_env)
    t = await make_tenant()
    api = await make_api_client(t, ["redemptions:write"])
    iss = await issued_codes(
        kernel, t.id, 1, kind="reusable_code", with_pin=False, uses=5, max_uses=5, allocate_count=5
    )
    answers = await _storm(client, api.headers, {"code": iss.numbers[0]})
    assert Counter(r.status_code for r in answers) == {201: 5, 409: CONCURRENT - 5}
    assert sorted(r.json()["use_number"] for r in answers if r.status_code == 201) == [1, 2, 3, 4, 5]
    assert {r.json()["code"] for r in answers if r.status_code == 409} == {"uses_exhausted"}


async def test_concurrent_spends_of_a_stored_value_card(
    client, kernel, test_env, make_tenant, make_api_client
):
    _postgres_only(test_env)
    t = await make_tenant()
    api = await make_api_client(t, ["redemptions:read", "redemptions:write"])
    iss = await issued_codes(kernel, t.id, 1, kind="stored_value", with_pin=False)  # 1000 fen
    answers = await _storm(client, api.headers, {"code": iss.numbers[0], "amount": 150})
    assert Counter(r.status_code for r in answers) == {201: 6, 409: CONCURRENT - 6}
    assert {r.json()["code"] for r in answers if r.status_code == 409} == {"insufficient_balance"}
    ledger = (await client.get(f"/api/v1/stored-value/{iss.code_ids[0]}/ledger", headers=api.headers)).json()
    assert ledger["balance"] == 100
    assert [e["balance_after"] for e in ledger["entries"]] == [1000, 850, 700, 550, 400, 250, 100]


async def _card(kernel: Any, tenant_id: Any) -> tuple[Any, str]:
    iss = await issued_codes(kernel, tenant_id, 1, kind="stored_value", with_pin=False)
    return iss.code_ids[0], iss.numbers[0]


Op = tuple[str, int]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("redeem"), st.integers(min_value=1, max_value=600)),
        st.tuples(st.just("rollback"), st.integers(min_value=0, max_value=20)),
    ),
    min_size=1,
    max_size=14,
)


_TENANT: dict[str, Any] = {}  # one tenant for every example of the property test (fixtures run once)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=ops)
async def test_stored_value_balance_never_negative(kernel, make_tenant, sequence: list[Op]):
    if "t" not in _TENANT:
        _TENANT["t"] = await make_tenant()
    t = _TENANT["t"]
    code_id, number = await _card(kernel, t.id)
    face = 1000
    model_balance, standing = face, []  # spends that stand: (redemption id, amount)
    caller = Caller()
    for op, n in sequence:
        with tenant_context(t.id):
            async with kernel.db.transaction() as db:
                if op == "redeem":
                    try:
                        red = await redeem(db, kernel, RedeemIn(code=number, amount=n), caller)
                    except DomainError as exc:
                        assert exc.code == "insufficient_balance" and n > model_balance
                    else:
                        assert n <= model_balance and red.balance_after == model_balance - n
                        model_balance -= n
                        standing.append((red.id, n))
                elif standing:
                    red_id, amount = standing.pop(n % len(standing))
                    await rollback(db, red_id, "property test")
                    model_balance += amount
        with tenant_context(t.id):
            async with kernel.db.transaction() as db:
                account = (
                    await db.execute(select(CodeAccount).where(CodeAccount.code_id == code_id))
                ).scalar_one_or_none()
                balance = account.balance if account else face
                entries = (
                    (
                        await db.execute(
                            select(LedgerEntry).where(LedgerEntry.code_id == code_id).order_by(LedgerEntry.id)
                        )
                    )
                    .scalars()
                    .all()
                )
        assert balance == model_balance >= 0
        assert all(e.balance_after >= 0 for e in entries)
        assert sum(e.delta for e in entries) == (balance if entries else 0)
        assert balance == face - sum(a for _, a in standing)
    expected_state = "redeemed" if model_balance == 0 else "issued"
    assert await code_state(kernel, t.id, code_id) == expected_state
