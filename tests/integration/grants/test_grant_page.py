"""The API's page of grants: read in one query whatever its length, and each grant on it exactly as
``GET /api/v1/grants/{id}`` shows it (member, codes masked, item states)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

PHONE = "13812345678"


async def _grant(shop: Any, product_id: Any, **kw: Any) -> dict[str, Any]:
    r = await shop.post("/api/v1/grants", {"product_id": str(product_id), "channel": "none", **kw})
    assert r.status_code == 201, r.text
    return r.json()


async def test_grant_page_reads_items_codes_and_members_in_one_query(shop: Any) -> None:
    s = await shop.stock(12)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        statements.append(sql)

    async def listed() -> tuple[list[dict[str, Any]], list[str]]:
        statements.clear()
        engine = shop.kernel.db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", seen)
        try:
            r = await shop.get("/api/v1/grants", limit=50)
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        assert r.status_code == 200, r.text
        # the page's own reads; other connections (the in-process worker, the audit sealer) name no members
        return r.json()["items"], [q for q in statements if "grant_items" in q or "members" in q]

    await _grant(shop, s.product_id, phone=PHONE, quantity=2, name="张三")
    await _grant(shop, s.product_id, email="a@example.com")
    few, few_queries = await listed()
    voided = await _grant(shop, s.product_id, external_id="m-3", quantity=3)
    assert (await shop.post(f"/api/v1/grants/{voided['id']}/void", {"reason": "test"})).status_code == 200
    await _grant(shop, s.product_id, phone=PHONE)
    await _grant(shop, s.product_id, email="b@example.com", quantity=2)
    many, many_queries = await listed()
    assert (len(few), len(many)) == (2, 5)
    assert len(few_queries) == len(many_queries) == 1, many_queries
    for g in many:
        one = await shop.get(f"/api/v1/grants/{g['id']}")
        assert one.json() == g  # the batched page and the single read agree on every field
    assert sum(len(g["codes"]) for g in many) == 9
    assert {c["status"] for g in many if g["id"] == voided["id"] for c in g["codes"]} == {"voided"}
