"""A grant's statements: the member in one upsert, the product from the process cache, the grant's rows
in one statement on PostgreSQL (one per table elsewhere), both audit events in one INSERT; and the rows
they write are the ones the ORM wrote before (items, ``grant.created``, fan-out and delivery rows)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import event, select

from core.events.models import Event, WebhookSubscription
from core.grants import services
from core.grants.models import Grant, GrantItem
from core.grants.schemas import GrantRequest
from core.jobs.models import OutboxMessage

PHONE = "+86 139-0000-1111"


async def _grant_counting(shop: Any, data: GrantRequest) -> tuple[list[str], Grant]:
    """Grant in one transaction of the shop's tenant; the SQL statements it ran, and the grant."""

    async def work(db: Any) -> tuple[list[str], Grant]:
        seen: list[str] = []
        conn = (await db.connection()).sync_connection  # this session's only: workers run beside it
        listener = lambda *args: seen.append(" ".join(args[2].split()))  # noqa: E731 - (conn, cursor, sql, ...)
        event.listen(conn, "before_cursor_execute", listener)
        try:
            grant = await services.create_grant(db, shop.kernel, data, source="api")
        finally:
            event.remove(conn, "before_cursor_execute", listener)
        return seen, grant

    result: tuple[list[str], Grant] = await shop.run(work)
    return result


async def _grant_outbox(db: Any) -> list[OutboxMessage]:
    """The tenant's outbox rows a grant writes (deliveries, webhook fan-outs), not the onboarding's."""
    found = await db.execute(
        select(OutboxMessage).where(OutboxMessage.actor.in_(("deliver_grant", "fan_out_webhooks")))
    )
    return list(found.scalars())


def _touching(seen: list[str], table: str) -> list[str]:
    return [s for s in seen if f" {table} " in f" {s} ".replace("(", " ")]


async def test_a_grant_runs_few_statements(shop, test_env):
    s = await shop.stock(6)
    first, _ = await _grant_counting(
        shop, GrantRequest(product_id=s.product_id, external_id="w-1", channel="none")
    )
    assert len(_touching(first, "products")) == 1  # read once, then kept a few seconds
    seen, grant = await _grant_counting(
        shop, GrantRequest(product_id=s.product_id, quantity=2, phone=PHONE, channel="sms")
    )
    assert _touching(seen, "products") == []
    members = _touching(seen, "members")
    assert len(members) == 1 and "ON CONFLICT" in members[0].upper()  # found or created in one statement
    grants = [x for x in seen if x.upper().startswith(("INSERT INTO GRANTS", "WITH"))]
    audit = [x for x in seen if x.upper().startswith("INSERT INTO AUDIT_EVENTS")]
    assert len(audit) == 1  # codes.allocated and grant.created together
    if test_env.backend == "postgresql":
        (one,) = grants
        assert all(f"INSERT INTO {t} " in one for t in ("grants", "grant_items", "events", "outbox"))
        assert len([x for x in seen if x.upper().startswith(("INSERT", "WITH"))]) == 3  # member, grant, audit
    else:
        assert len(_touching(seen, "grant_items")) == 1 and len(_touching(seen, "events")) == 1
    again, _ = await _grant_counting(shop, GrantRequest(product_id=s.product_id, phone=PHONE, channel="none"))
    assert len(_touching(again, "members")) == 1  # a known member: the same one statement
    assert grant.status == "created"


async def test_the_written_rows(shop):
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=10)
    s = await shop.stock(2, expiries=[soon, None], validity_kind="days_after_issue", validity_days=30)
    _, grant = await _grant_counting(
        shop,
        GrantRequest(product_id=s.product_id, quantity=2, phone=PHONE, channel="sms", campaign_ref="C-1"),
    )

    async def read(db: Any) -> tuple[Any, ...]:
        row = (await db.execute(select(Grant).where(Grant.id == grant.id))).scalar_one()
        items = list((await db.execute(select(GrantItem).where(GrantItem.grant_id == grant.id))).scalars())
        events = list((await db.execute(select(Event).where(Event.object_id == str(grant.id)))).scalars())
        return row, items, events, await _grant_outbox(db)

    row, items, events, outbox = await shop.run(read)
    assert (row.ref, row.quantity, row.channel, row.campaign_ref, row.source) == (
        grant.ref,
        2,
        "sms",
        "C-1",
        "api",
    )
    assert row.contact_masked == "139****1111" and row.contact_secret and row.created_at is not None
    assert row.member_id == grant.member_id and row.tenant_id == shop.id
    assert len(items) == 2 and {i.status for i in items} == {"held"}
    assert {i.member_id for i in items} == {grant.member_id}
    expiries = sorted(i.expires_at for i in items)  # the code's own, or 30 days after issue when sooner
    assert abs(expiries[0] - soon) < dt.timedelta(seconds=1)
    assert abs(expiries[1] - (row.created_at + dt.timedelta(days=30))) < dt.timedelta(minutes=1)
    (created,) = events
    assert created.type == "grant.created" and created.data["ref"] == grant.ref
    assert sorted(created.data["codes"]) == sorted(str(i.code_id) for i in items)
    assert [(m.actor, m.payload, m.business_key) for m in outbox] == [
        ("deliver_grant", {"grant_id": str(grant.id)}, f"deliver_grant:{grant.id}")
    ]  # no webhook subscription: no fan-out row


async def test_an_active_webhook_subscription_gets_a_fan_out_row(shop):
    s = await shop.stock(2)

    async def subscribe(db: Any) -> None:
        db.add(WebhookSubscription(url="https://hooks.example.com/k", events=[], secret=b"s", active=True))

    await shop.run(subscribe)
    _, grant = await _grant_counting(
        shop, GrantRequest(product_id=s.product_id, external_id="fan", channel="none")
    )

    async def read(db: Any) -> tuple[Event, list[OutboxMessage]]:
        created = (await db.execute(select(Event).where(Event.object_id == str(grant.id)))).scalar_one()
        return created, await _grant_outbox(db)

    created, outbox = await shop.run(read)
    assert [(m.actor, m.payload, m.business_key) for m in outbox] == [
        ("fan_out_webhooks", {"event_id": str(created.id)}, f"webhooks:{created.id}")
    ]


async def test_the_grant_object_belongs_to_the_session(shop):
    s = await shop.stock(2)

    async def work(db: Any) -> tuple[bool, str]:
        grant = await services.create_grant(
            db,
            shop.kernel,
            GrantRequest(product_id=s.product_id, external_id="obj", channel="none"),
            source="api",
        )
        same = await services.get_grant(db, grant.id) is grant  # the identity map has it: not read again
        voided = await services.void_grant(db, shop.kernel, grant.id, "changed our mind")
        return same, voided.status

    assert await shop.run(work) == (True, "voided")


async def test_a_revealed_answer_lists_the_codes_as_handed_out(shop):
    now = dt.datetime.now(dt.UTC)
    s = await shop.stock(3, expiries=[now + dt.timedelta(days=d) for d in (30, 10, 20)])
    r = await shop.post(
        "/api/v1/grants", {"product_id": str(s.product_id), "quantity": 3, "external_id": "rv"}, reveal=True
    )
    assert r.status_code == 201, r.text
    codes = r.json()["codes"]
    assert all(c["number"] for c in codes)
    assert [c["expires_at"] for c in codes] == sorted(c["expires_at"] for c in codes)  # first-expiring first
