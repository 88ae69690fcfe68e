"""Stock rules and custody of secrets: expiry sweep with write-offs, low-stock and near-expiry alerts (and
their events), void, who may reveal, reveal/export rate limits, and no plaintext in logs or tables."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import uuid

import pytest
import structlog
from sqlalchemy import select, text, update

from core.audit.context import Actor, reset_actor, set_actor
from core.audit.models import AuditEvent
from core.db.context import tenant_context
from core.errors import Conflict, Forbidden, ValidationFailed
from core.inventory import custody
from core.inventory.allocation import OutOfStock, allocate
from core.inventory.models import Code, WriteOff
from core.inventory.stock import evaluate_alerts, expire_codes, open_alerts
from core.logging import configure_logging
from tenants.schemas import Principal
from tests.integration.inventory.stocking import stock_product

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
async def shop(client, kernel, make_tenant, make_api_client):
    tenant = await make_tenant(plan="growth")
    creds = await make_api_client(tenant)

    class Shop:
        id = tenant.id
        headers = creds.headers

        async def stock(self, count, **kw):
            return await stock_product(kernel, tenant.id, count, **kw)

        async def run(self, fn):
            with tenant_context(tenant.id):
                async with kernel.db.transaction() as db:
                    return await fn(db)

        async def take(self, product_id, n):
            return await self.run(lambda db: allocate(db, product_id, n, "test"))

        async def evaluate(self):
            return await self.run(lambda db: evaluate_alerts(db))

        async def alerts(self):
            return [(a.product_id, a.kind) for a, _ in await self.run(open_alerts)]

        async def audit(self, action):
            async def go(db):
                rows = await db.execute(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.txid, AuditEvent.id))
                return list(rows.scalars())
            return await self.run(go)

        async def events(self, type_):
            r = await client.get("/api/v1/events", params={"type": type_}, headers=creds.headers)
            assert r.status_code == 200, r.text
            return r.json()["items"]

    return Shop()


async def test_expiry_sweep_marks_codes_expired_and_writes_off_their_cost(shop):
    s = await shop.stock(4, unit_cost=700, expiries=[NOW - dt.timedelta(days=2), NOW - dt.timedelta(minutes=1),
                                                     NOW + dt.timedelta(days=3), None])

    async def hold_second(db):
        await db.execute(update(Code).where(Code.id == s.code_ids[1])
                         .values(state="reserved", reserved_until=NOW + dt.timedelta(hours=1)))
    await shop.run(hold_second)
    assert await shop.run(expire_codes) == 2
    assert await shop.run(expire_codes) == 0  # nothing twice

    async def read(db):
        states = dict((await db.execute(select(Code.id, Code.state).where(Code.batch_id == s.batch_id))).all())
        offs = (await db.execute(select(WriteOff).where(WriteOff.batch_id == s.batch_id))).scalars().all()
        return states, offs
    states, offs = await shop.run(read)
    assert [states[c] for c in s.code_ids] == ["expired", "expired", "available", "available"]
    assert [(w.reason, w.quantity, w.cost, w.currency) for w in offs] == [("expired", 2, 1400, "CNY")]
    audit = await shop.audit("codes.expired")
    assert len(audit) == 1 and audit[0].object_id == str(s.batch_id)
    assert audit[0].data["quantity"] == 2 and audit[0].data["write_off_cost"] == 1400


async def test_low_stock_absolute_threshold_opens_once_emits_an_event_and_resolves_on_restock(shop):
    s = await shop.stock(10, low_stock_threshold=3)
    await shop.take(s.product_id, 6)
    assert (await shop.evaluate()).opened == [] and await shop.alerts() == []
    await shop.take(s.product_id, 1)  # 3 left: at the threshold
    first = await shop.evaluate()
    assert len(first.opened) == 1 and first.opened[0].endswith(":low_stock")
    assert (await shop.evaluate()).opened == []  # still low: the alert stays, no second one
    assert await shop.alerts() == [(s.product_id, "low_stock")]
    events = await shop.events("stock.low")
    assert len(events) == 1
    assert events[0]["object_id"] == str(s.product_id)
    assert events[0]["data"]["available"] == 3 and events[0]["data"]["threshold"] == 3
    await shop.stock(10, product_id=s.product_id)  # restocked
    assert (await shop.evaluate()).resolved == [first.opened[0]]
    assert await shop.alerts() == []
    assert len(await shop.events("stock.low")) == 1
    assert len(await shop.audit("stock.low_stock")) == 1


async def test_low_stock_by_days_of_cover_from_the_last_30_days_usage(shop):
    s = await shop.stock(100, low_stock_days_cover=10)
    idle = await shop.stock(1, low_stock_days_cover=10)  # no usage: no cover figure, no alert
    await shop.take(s.product_id, 60)  # 2 a day; 40 left = 20 days
    assert (await shop.evaluate()).opened == []
    await shop.take(s.product_id, 25)  # 85/30 a day; 15 left ≈ 5.3 days
    assert len((await shop.evaluate()).opened) == 1
    assert await shop.alerts() == [(s.product_id, "low_stock")]
    data = (await shop.events("stock.low"))[0]["data"]
    assert data["days_cover"] == 5.3 and data["min_days_cover"] == 10 and data["usage_per_day"] == 2.83
    assert idle.product_id not in [p for p, _ in await shop.alerts()]


async def test_low_stock_default_watermark_is_ten_percent(shop):
    s = await shop.stock(20)
    await shop.take(s.product_id, 17)  # 3 of 20 left: above 10%
    assert (await shop.evaluate()).opened == []
    await shop.take(s.product_id, 1)  # 2 of 20 left: at 10%
    assert len((await shop.evaluate()).opened) == 1
    data = (await shop.events("stock.low"))[0]["data"]
    assert data["watermark"] == 0.1 and data["stocked"] == 20 and data["available"] == 2
    await shop.stock(20, product_id=s.product_id)
    assert len((await shop.evaluate()).resolved) == 1


async def test_near_expiry_alert(shop):
    soon = await shop.stock(3, near_expiry_days=7, low_stock_threshold=0,
                            expiries=[NOW + dt.timedelta(days=3)] * 2 + [NOW + dt.timedelta(days=60)])
    later = await shop.stock(3, near_expiry_days=7, low_stock_threshold=0,
                             expiries=[NOW + dt.timedelta(days=30)] * 3)
    check = await shop.evaluate()
    assert check.opened == [f"{(await _sku(shop, soon.product_id))}:near_expiry"]
    assert await shop.alerts() == [(soon.product_id, "near_expiry")]
    events = await shop.events("stock.near_expiry")
    assert len(events) == 1 and events[0]["data"]["expiring"] == 2 and events[0]["data"]["within_days"] == 7
    assert later.product_id not in [p for p, _ in await shop.alerts()]
    await shop.take(soon.product_id, 2)  # the expiring ones go out first (FEFO)
    assert len((await shop.evaluate()).resolved) == 1


async def _sku(shop, product_id):
    from core.catalog.models import Product

    return await shop.run(lambda db: db.scalar(select(Product.sku).where(Product.id == product_id)))


async def test_void_rules_write_off_and_audit(shop):
    s = await shop.stock(5, unit_cost=250, expiries=[None] * 4 + [NOW - dt.timedelta(days=1)])
    issued = await shop.take(s.product_id, 1)
    with pytest.raises(ValidationFailed):
        await shop.run(lambda db: custody.void_codes(db, [s.code_ids[1]], " "))
    await shop.run(expire_codes)
    with pytest.raises(Conflict):
        await shop.run(lambda db: custody.void_codes(db, [s.code_ids[4]], "supplier recall"))  # expired
    available = [c for c in s.code_ids[:4] if c != issued.codes[0].id]
    assert await shop.run(lambda db: custody.void_codes(db, [available[0], issued.codes[0].id], "found invalid")) == 2

    async def redeem(db):
        await db.execute(update(Code).where(Code.id == available[1]).values(state="redeemed"))
    await shop.run(redeem)
    with pytest.raises(Conflict):
        await shop.run(lambda db: custody.void_codes(db, [available[1]], "supplier recall"))
    with pytest.raises(Conflict):  # voided cannot be voided again
        await shop.run(lambda db: custody.void_codes(db, [available[0]], "supplier recall"))

    async def offs(db):
        return [(w.reason, w.quantity, w.cost) for w in (await db.execute(
            select(WriteOff).where(WriteOff.batch_id == s.batch_id).order_by(WriteOff.reason))).scalars()]
    assert await shop.run(offs) == [("expired", 1, 250), ("voided", 1, 250)]  # the issued one cost nothing more
    audit = await shop.audit("codes.voided")
    assert audit[0].data["reason"] == "found invalid" and len(audit[0].data["codes"]) == 2
    # voided codes never go out: one available code is left
    assert len((await shop.take(s.product_id, 1)).codes) == 1
    with pytest.raises(OutOfStock):
        await shop.take(s.product_id, 1)


@pytest.mark.parametrize(("role", "allowed"), [
    ("viewer", False), ("operator", False), ("finance", False), ("admin", True), ("owner", True)])
async def test_only_owners_and_admins_may_reveal_in_the_console(shop, kernel, role, allowed):
    s = await shop.stock(1)
    who = Principal(kind="user", subject_id=str(uuid.uuid4()), tenant_id=shop.id, role=role)
    token = set_actor(Actor("user", who.subject_id))
    try:
        if allowed:
            code = await shop.run(lambda db: custody.reveal(db, kernel.keys, s.code_ids[0], "customer call", who))
            assert code.number == s.numbers[0]
            _, body = await shop.run(lambda db: custody.export_batch(db, kernel.keys, s.batch_id, "audit", who))
            assert s.numbers[0].encode() in body
        else:
            with pytest.raises(Forbidden):
                await shop.run(lambda db: custody.reveal(db, kernel.keys, s.code_ids[0], "customer call", who))
            with pytest.raises(Forbidden):
                await shop.run(lambda db: custody.export_batch(db, kernel.keys, s.batch_id, "audit", who))
    finally:
        reset_actor(token)
    audit = await shop.audit("code.revealed")
    if allowed:
        assert [(e.actor_type, e.actor_id, e.data["reason"]) for e in audit] == [("user", who.subject_id,
                                                                                  "customer call")]
    else:
        assert audit == []
    client_without = Principal(kind="client", subject_id="kqc_x", tenant_id=shop.id, scopes=frozenset({"inventory:read"}))
    assert custody.may_reveal(client_without) is False and custody.may_reveal(None) is False


async def test_reveal_and_export_rate_limits_answer_429(shop, client):
    s = await shop.stock(1)
    url = f"/api/v1/codes/{s.code_ids[0]}/reveal"
    for i in range(custody.REVEALS_PER_HOUR):
        r = await client.post(url, json={"reason": f"support ticket {i}"}, headers=shop.headers)
        assert r.status_code == 200, (i, r.text)
    r = await client.post(url, json={"reason": "one more time"}, headers=shop.headers)
    assert r.status_code == 429 and r.json()["code"] == "reveal_limit" and r.headers["retry-after"]
    assert len(await shop.audit("code.revealed")) == custody.REVEALS_PER_HOUR  # the refused one is not audited
    url = f"/api/v1/batches/{s.batch_id}/export"
    for _ in range(custody.EXPORTS_PER_DAY):
        assert (await client.post(url, json={"reason": "backup"}, headers=shop.headers)).status_code == 200
    r = await client.post(url, json={"reason": "backup"}, headers=shop.headers)
    assert r.status_code == 429 and r.headers["retry-after"]


async def test_no_plaintext_in_logs_or_in_the_raw_tables(shop, client, settings, owner_engine):
    s = await shop.stock(4)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    configure_logging("DEBUG", json=True)
    processors = structlog.get_config()["processors"]
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(buffer), processors=processors)
    logging.getLogger().addHandler(handler)
    try:
        pid = str(s.product_id)
        a = await client.post("/api/v1/allocations", json={"product_id": pid, "quantity": 1, "purpose": "order"},
                              headers=shop.headers)
        held = await client.post("/api/v1/allocations", json={"product_id": pid, "quantity": 1, "purpose": "cart",
                                                              "reserve_seconds": 60}, headers=shop.headers)
        assert a.status_code == held.status_code == 201
        c = await client.post(f"/api/v1/reservations/{held.json()['reservation_id']}/confirm", headers=shop.headers)
        assert c.status_code == 200
        revealed = []
        for code_id in s.code_ids:
            r = await client.post(f"/api/v1/codes/{code_id}/reveal", json={"reason": "security test"},
                                  headers={**shop.headers, "X-Request-ID": "reveal-test"})
            assert r.status_code == 200
            revealed.append(r.json())
        e = await client.post(f"/api/v1/batches/{s.batch_id}/export", json={"reason": "security test"},
                              headers=shop.headers)
        assert e.status_code == 200
        refused = await client.post(f"/api/v1/codes/{s.code_ids[0]}/reveal", json={"reason": "keep a copy"},
                                    headers={**shop.headers, "Idempotency-Key": "sec-1"})
        assert refused.status_code == 400
    finally:
        logging.getLogger().removeHandler(handler)
        configure_logging(settings.log_level, settings.log_json)
    secrets = [x["number"] for x in revealed] + [x["pin"] for x in revealed]
    assert sorted(x["number"] for x in revealed) == sorted(s.numbers) and all(x["pin"] for x in revealed)
    logs = buffer.getvalue()
    assert any(json.loads(line).get("path", "").endswith("/reveal") for line in logs.splitlines()
               if line.startswith("{")), "the capture saw the requests"
    for secret in secrets:
        assert secret not in logs

    async with owner_engine.connect() as conn:
        tid = shop.id.hex if owner_engine.dialect.name == "sqlite" else str(shop.id)
        dumps = []
        for table in ("codes", "audit_events", "idempotency_keys", "events", "reservations"):
            rows = (await conn.execute(text(f"SELECT * FROM {table} WHERE tenant_id = :t"), {"t": tid})).all()
            if table == "codes":
                assert len(rows) == 4
            dumps += [repr(tuple(row)) for row in rows]
            dumps += [bytes(v).decode("latin-1") for row in rows for v in row if isinstance(v, bytes | memoryview)]
    raw = "\n".join(dumps)
    assert all(n[-4:] in raw for n in s.numbers)  # the dump does read the rows (last 4 are kept for display)
    for secret in secrets:
        assert secret not in raw
