"""The redemption hot path stays lean: the statements a redemption sends to the redemption's own tables
(codes, products, grants, grant items, accounts, redemptions, the ledger, settings) and to the event log and
outbox, per kind and backend, counted on the engine; and the rare paths the lean one leaves out (a spend
above the face value, the rollback)."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from core.db.context import tenant_context
from core.redemption.checks import Caller
from core.redemption.redeem import redeem
from core.redemption.schemas import RedeemIn
from tests.integration.redemption.helpers import issued_codes

URL = "/api/v1/redemptions"
OWN_TABLES = re.compile(
    r"\b(codes|products|grants|grant_items|code_accounts|redemptions|stored_value_entries|redemption_settings"
    r"|events|outbox)\b"
)
WRITES = re.compile(r"\b(UPDATE|INSERT INTO|DELETE FROM) (\w+)")


@contextmanager
def statements(kernel: Any, only: Any = None) -> Iterator[list[str]]:
    """The SQL the app's engine sends inside the block (one string per statement); with ``only`` (a DBAPI
    connection) just that connection's — the in-process outbox relay and sealer share the engine."""
    sent: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if only is None or conn.connection.dbapi_connection is only:
            sent.append(" ".join(statement.split()))

    engine = kernel.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", listen)


async def _redeem_counting(kernel: Any, tenant_id: Any, body: RedeemIn) -> tuple[Any, list[str]]:
    """Redeem through the service; the statements on the redemption's tables as "VERB first_table"."""
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            own = (await db.connection()).sync_connection
            assert own is not None
            with statements(kernel, own.connection.dbapi_connection) as sent:
                red = await redeem(db, kernel, body, Caller())
    return red, [shape for shape in map(_shape, sent) if shape]


def _shape(sql: str) -> str | None:
    """``"SELECT <first table>"`` of a read, the writes of a data-modifying statement in the order written
    (``"UPDATE codes + INSERT redemptions"``), or None for a statement on none of the tables counted."""
    writes = [
        f"{verb.split()[0]} {table}" for verb, table in WRITES.findall(sql) if OWN_TABLES.fullmatch(table)
    ]
    if writes:
        return " + ".join(writes)
    table = OWN_TABLES.search(sql)
    return f"{sql.split()[0]} {table.group(1)}" if table else None


async def test_statements_per_redemption(client, kernel, make_tenant, make_api_client):
    t = await make_tenant()
    api = await make_api_client(t)
    single = await issued_codes(kernel, t.id, 1, with_pin=False)
    red, sent = await _redeem_counting(kernel, t.id, RedeemIn(code=single.numbers[0]))
    assert red.kind == "code"
    # one lookup (code, product, holder, window), then the conditional state change, the redemption and its
    # event with the webhook fan-out row (written only when the tenant has a subscription): one statement on
    # PostgreSQL; on SQLite (no data-modifying CTEs) the event comes from emit, flushed by the next statement
    postgres = kernel.db.dialect == "postgresql"
    if postgres:
        event = ["INSERT redemptions + INSERT outbox + INSERT events"]
        assert sent == ["SELECT codes", f"UPDATE codes + {event[0]}"]
    else:
        event = ["INSERT redemptions", "INSERT events", "INSERT outbox"]
        assert sent == ["SELECT codes", "UPDATE codes", *event]

    # a reusable code granted to a member: the grant's lock (taken first, as a void does), the use counter
    # (one upsert), the member's item, then the grant's status from its items (here: redeemed)
    reusable = await issued_codes(
        kernel, t.id, 1, allocate_count=0, kind="reusable_code", with_pin=False, uses=2, max_uses=2
    )
    r = await client.post(
        "/api/v1/grants",
        json={"product_id": str(reusable.product_id), "external_id": "m-hot", "channel": "none"},
        headers={**api.headers, "Idempotency-Key": secrets.token_hex(8)},
    )
    assert r.status_code == 201, r.text
    member_id = r.json()["member"]["id"]
    red, sent = await _redeem_counting(
        kernel, t.id, RedeemIn(code=reusable.numbers[0], member_id=uuid.UUID(member_id))
    )
    assert str(red.member_id) == member_id and red.use_number == 1
    assert sent == [
        "SELECT codes",
        "SELECT grants",
        "INSERT code_accounts",
        "UPDATE grant_items",
        *event,
        "SELECT grant_items",
        "UPDATE grants",
    ]

    # a stored-value card's first spend: the balance upsert, the redemption, the ledger (opening + spend)
    card = await issued_codes(kernel, t.id, 1, kind="stored_value", with_pin=False)
    red, sent = await _redeem_counting(kernel, t.id, RedeemIn(code=card.numbers[0], amount=250))
    assert red.balance_after == 750
    assert sent == ["SELECT codes", "INSERT code_accounts", *event, "INSERT stored_value_entries"]


async def test_spend_above_the_face_value_is_refused_with_the_balance(
    client, kernel, make_tenant, make_api_client
):
    t = await make_tenant()
    api = await make_api_client(t)
    card = await issued_codes(kernel, t.id, 1, kind="stored_value", with_pin=False)  # 1000 fen
    r = await client.post(URL, json={"code": card.numbers[0], "amount": 1500}, headers=api.headers)
    assert r.status_code == 409 and r.json()["code"] == "insufficient_balance"
    assert r.json()["balance"] == 1000 and r.json()["amount"] == 1500
    ledger = (await client.get(f"/api/v1/stored-value/{card.code_ids[0]}/ledger", headers=api.headers)).json()
    assert ledger["balance"] == 1000 and ledger["entries"] == []  # the refused spend left nothing behind
    r = await client.post(URL, json={"code": card.numbers[0], "amount": 1000}, headers=api.headers)
    assert r.status_code == 201 and r.json()["balance_after"] == 0


async def test_redeem_answer_carries_the_tenants_window(client, kernel, make_tenant, make_api_client):
    t = await make_tenant()
    api = await make_api_client(t)
    iss = await issued_codes(kernel, t.id, 2, with_pin=False)
    first = (await client.post(URL, json={"code": iss.numbers[0]}, headers=api.headers)).json()
    assert first["rollback_until"] > first["redeemed_at"]
    r = await client.put(
        "/api/v1/redemption-settings", json={"rollback_window_minutes": 0}, headers=api.headers
    )
    assert r.status_code == 200
    second = (await client.post(URL, json={"code": iss.numbers[1]}, headers=api.headers)).json()
    assert second["rollback_until"] == second["redeemed_at"]
    back = await client.post(f"{URL}/{second['id']}/rollback", json={"reason": "late"}, headers=api.headers)
    assert back.status_code == 409 and back.json()["code"] == "rollback_window_passed"
