"""The Idempotency-Key of ``POST /api/v1/grants``: the claim and the answer are one INSERT and one UPDATE
of one row, in the grant's own transaction (no transaction of their own); the stored answer is the response
byte for byte; concurrent duplicates grant once."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event, func, select

from core.grants.models import Grant
from core.http.models import IdempotencyRecord


def _body(product_id: Any, who: str) -> dict[str, Any]:
    return {"product_id": str(product_id), "external_id": who, "channel": "none"}


async def test_one_claim_and_one_answer_in_the_grants_transaction(shop, kernel):
    s = await shop.stock(2)
    seen: list[tuple[int, str]] = []  # (connection, statement) touching the idempotency table

    def listener(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "idempotency_keys" in statement:
            seen.append((id(conn.connection.dbapi_connection), " ".join(statement.split())))

    engine = kernel.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", listener)
    try:
        r = await shop.post("/api/v1/grants", _body(s.product_id, "idem-1"), key="idem-key-1")
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert r.status_code == 201, r.text
    assert [sql.split()[0].upper() for _, sql in seen] == ["INSERT", "UPDATE"]
    assert len({conn for conn, _ in seen}) == 1  # one connection: the request's own transaction

    async def stored(db: Any) -> tuple[IdempotencyRecord, bytes]:
        row = (
            await db.execute(select(IdempotencyRecord).where(IdempotencyRecord.key == "idem-key-1"))
        ).scalar_one()
        cipher = await kernel.keys.cipher(db)
        return row, cipher.decrypt(row.response_body, aad=b"idempotency:" + row.id.bytes)

    row, body = await shop.run(stored)
    assert (row.status, row.response_status, body) == ("complete", 201, r.content)
    again = await shop.post("/api/v1/grants", _body(s.product_id, "idem-1"), key="idem-key-1")
    assert again.content == r.content and again.headers["idempotent-replayed"] == "true"


async def test_concurrent_duplicates_grant_once(shop):
    s = await shop.stock(6)
    answers = await asyncio.gather(
        *[shop.post("/api/v1/grants", _body(s.product_id, "dup"), key="dup-key") for _ in range(6)]
    )
    assert {a.status_code for a in answers} <= {201, 409}, [a.text for a in answers]
    created = [a for a in answers if a.status_code == 201]
    assert created and all(a.content == created[0].content for a in created)
    assert all(a.json()["code"] == "idempotency_in_progress" for a in answers if a.status_code == 409)
    count = await shop.run(
        lambda db: db.scalar(select(func.count()).select_from(Grant).where(Grant.product_id == s.product_id))
    )
    assert count == 1
