"""What a redemption writes besides the redemption: its ``code.redeemed`` event, the event's webhook fan-out
row (only for a tenant with an active subscription) and its audit record — once per redemption, on both
backends (one statement with the redemption on PostgreSQL, ``emit`` on SQLite); and the hot path's Core
statements, which carry their tenant themselves, never see or touch another tenant's code."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update

from core.audit.models import AuditEvent
from core.db.context import tenant_context
from core.events.models import Event, WebhookSubscription
from core.events.services import FANOUT_ACTOR
from core.inventory.models import Code
from core.jobs.models import OutboxMessage
from core.redemption.models import Redemption
from tests.integration.redemption.helpers import code_state, issued_codes

URL = "/api/v1/redemptions"


async def _written(kernel: Any, tenant_id: uuid.UUID, redemption_id: str) -> tuple[list[Event], list[Any]]:
    """The ``code.redeemed`` events of the redemption, and the fan-out rows of those events."""
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            events = list(
                (
                    await db.execute(
                        select(Event).where(
                            Event.type == "code.redeemed",
                            Event.data["redemption_id"].as_string() == redemption_id,
                        )
                    )
                ).scalars()
            )
            keys = [f"webhooks:{e.id}" for e in events]
            fan_out = (
                await db.execute(
                    select(OutboxMessage.actor, OutboxMessage.payload, OutboxMessage.business_key).where(
                        OutboxMessage.business_key.in_(keys)
                    )
                )
            ).all()
    return events, list(fan_out)


async def _subscribe(kernel: Any, tenant_id: uuid.UUID, *, active: bool) -> uuid.UUID:
    """A subscription to another event type: the fan-out row is written for it, no delivery follows."""
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            row = WebhookSubscription(
                url="https://hooks.example.com/kaquan", events=["grant.created"], secret=b"-", active=active
            )
            db.add(row)
            await db.flush()
            return row.id


async def test_event_and_fan_out_are_written_with_the_redemption(
    client, kernel, make_tenant, make_api_client
):
    t = await make_tenant()
    api = await make_api_client(t)
    iss = await issued_codes(kernel, t.id, 3, with_pin=False)

    # no subscription: the event, no fan-out row (no relay or job work for a tenant without webhooks)
    r = await client.post(
        URL, json={"code": iss.numbers[0], "store": "North", "terminal": "T1"}, headers=api.headers
    )
    assert r.status_code == 201, r.text
    red = r.json()
    events, fan_out = await _written(kernel, t.id, red["id"])
    assert len(events) == 1 and fan_out == []
    (event,) = events
    assert event.object_id == str(iss.code_ids[0]) and event.tenant_id == t.id
    assert event.data["store"] == "North" and event.data["terminal"] == "T1" and event.data["kind"] == "code"
    assert event.data["code_id"] == str(iss.code_ids[0]) and iss.numbers[0] not in str(event.data)

    # an inactive subscription: still none
    sub = await _subscribe(kernel, t.id, active=False)
    r = await client.post(URL, json={"code": iss.numbers[1]}, headers=api.headers)
    assert r.status_code == 201, r.text
    assert [len(x) for x in await _written(kernel, t.id, r.json()["id"])] == [1, 0]

    # an active one: one fan-out row naming the event, keyed by it
    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            await db.execute(
                update(WebhookSubscription).where(WebhookSubscription.id == sub).values(active=True)
            )
    r = await client.post(URL, json={"code": iss.numbers[2]}, headers=api.headers)
    assert r.status_code == 201, r.text
    (event,), fan_out = await _written(kernel, t.id, r.json()["id"])
    assert fan_out == [(FANOUT_ACTOR, {"event_id": str(event.id)}, f"webhooks:{event.id}")]

    # one audit record per redemption, in the redemption's transaction
    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            audited = await db.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "code.redeemed")
            )
    assert audited == 3


async def test_a_refused_redemption_writes_nothing(client, kernel, make_tenant, make_api_client):
    t = await make_tenant()
    api = await make_api_client(t)
    await _subscribe(kernel, t.id, active=True)
    iss = await issued_codes(kernel, t.id, 1, with_pin=False)
    first = await client.post(URL, json={"code": iss.numbers[0]}, headers=api.headers)
    assert first.status_code == 201, first.text
    again = await client.post(URL, json={"code": iss.numbers[0]}, headers=api.headers)
    assert again.status_code == 409 and again.json()["code"] == "already_redeemed"
    assert again.json()["redemption_id"] == first.json()["id"]
    events, fan_out = await _written(kernel, t.id, first.json()["id"])
    assert len(events) == 1 and len(fan_out) == 1
    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            counts = [
                await db.scalar(select(func.count()).select_from(model).where(*where))
                for model, where in (
                    (Redemption, [Redemption.code_id == iss.code_ids[0]]),
                    (Event, [Event.object_id == str(iss.code_ids[0]), Event.type == "code.redeemed"]),
                    (
                        AuditEvent,
                        [AuditEvent.object_id == str(iss.code_ids[0]), AuditEvent.action == "code.redeemed"],
                    ),
                )
            ]
    assert counts == [1, 1, 1]


async def test_another_tenants_code_with_the_same_digest_is_never_touched(
    client, kernel, make_tenant, make_api_client
):
    """B holds a code whose digest is the one A's lookup computes: A's redemption finds and changes only A's
    own code (the hot path's statements name their tenant; on PostgreSQL row-level security agrees)."""
    a, b = await make_tenant(), await make_tenant()
    api_a, api_b = await make_api_client(a), await make_api_client(b)
    mine = await issued_codes(kernel, a.id, 1, with_pin=False)
    theirs = await issued_codes(kernel, b.id, 2, with_pin=False)
    with tenant_context(a.id):
        async with kernel.db.transaction() as db:
            digest = await db.scalar(select(Code.digest).where(Code.id == mine.code_ids[0]))
    with tenant_context(b.id):
        async with kernel.db.transaction() as db:
            await db.execute(update(Code).where(Code.id == theirs.code_ids[0]).values(digest=digest))

    r = await client.post(URL, json={"code": mine.numbers[0], "store": "A"}, headers=api_a.headers)
    assert r.status_code == 201, r.text
    assert r.json()["code_id"] == str(mine.code_ids[0])
    assert await code_state(kernel, a.id, mine.code_ids[0]) == "redeemed"
    assert await code_state(kernel, b.id, theirs.code_ids[0]) == "issued"
    with tenant_context(b.id):
        async with kernel.db.transaction() as db:
            assert await db.scalar(select(func.count()).select_from(Redemption)) == 0
            assert await db.scalar(select(func.count()).select_from(Event)) == 0

    # B redeeming A's number finds nothing of A's (B's key digests it differently: not found in B)
    r = await client.post(URL, json={"code": mine.numbers[0]}, headers=api_b.headers)
    assert r.status_code == 404 and r.json()["code"] == "code_not_found"
    # and B's own codes still redeem in B
    r = await client.post(URL, json={"code": theirs.numbers[1]}, headers=api_b.headers)
    assert r.status_code == 201 and r.json()["code_id"] == str(theirs.code_ids[1])
