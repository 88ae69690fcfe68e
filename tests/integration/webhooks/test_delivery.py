"""Webhook delivery end to end against a real local HTTP receiver: signed POSTs, retry after a 500, no retry
after 410/400, resend, no second POST when a message is delivered again, and event-type filters."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select

from core.db.context import tenant_context
from core.events.services import emit
from core.jobs.outbox import enqueue
from core.webhooks import services, signing
from core.webhooks.models import WebhookDelivery


def _done(n: int, status: str = "succeeded"):
    return lambda items: len(items) == n and all(i["status"] == status for i in items)


async def test_a_500_is_retried_and_the_second_attempt_succeeds_signed(hooks, receiver, webhook_jobs):
    created = await hooks.subscribe(receiver.url("/hook"), ["stock.low"], description="ERP")
    sub, secret = created["subscription"], created["secret"]
    assert secret.startswith("whsec_") and sub["events"] == ["stock.low"] and sub["active"] is True
    receiver.script("/hook", (500, "temporarily broken"))

    event_id = await hooks.emit("stock.low", {"product_id": "p-1", "available": 2})
    (first,) = await hooks.wait_for(
        sub["id"],
        lambda items: len(items) == 1 and items[0]["attempts"] == 1 and items[0]["last_status_code"] == 500,
    )
    assert first["status"] == "pending" and first["response_snippet"] == "temporarily broken"
    assert first["event_id"] == str(event_id) and first["event_type"] == "stock.low"
    assert first["next_attempt_at"] is not None and first["last_error"] == "HTTP 500"

    await hooks.fast_forward(minutes=5)  # the 30 s backoff passes
    (done,) = await hooks.wait_for(sub["id"], _done(1))
    assert done["attempts"] == 2 and done["last_status_code"] == 200 and done["response_snippet"] == "ok"
    assert done["completed_at"] is not None and done["next_attempt_at"] is None and done["last_error"] is None

    posts = receiver.at("/hook")
    assert [p.status for p in posts] == [500, 200]
    for p in posts:
        assert p.headers["content-type"] == "application/json"
        assert p.headers["kaquan-event-id"] == str(event_id)
        assert p.headers["kaquan-delivery-id"] == done["id"]
        assert signing.verify(secret, p.body, p.headers["kaquan-signature"])
        assert not signing.verify(secret, p.body + b" ", p.headers["kaquan-signature"])
        body = json.loads(p.body)
        assert body["id"] == str(event_id) and body["type"] == "stock.low"
        assert body["data"] == {"product_id": "p-1", "available": 2} and body["created_at"]
    assert posts[0].body == posts[1].body  # the same event bytes on every attempt
    assert [p.headers["kaquan-attempt"] for p in posts] == ["1", "2"]


async def test_a_redelivered_message_never_posts_twice(hooks, receiver, webhook_jobs):
    sub = (await hooks.subscribe(receiver.url("/once")))["subscription"]
    await hooks.emit("grant.created", {"grant_id": "g-1"})
    (done,) = await hooks.wait_for(sub["id"], _done(1))
    assert len(receiver.at("/once")) == 1
    delivery_id = done["id"]

    # The relay delivering the same attempt again, a job retried after success, and the fan-out once more.
    keys = [f"dup:{delivery_id}:{n}" for n in range(3)] + [f"dup-fanout:{uuid.uuid4()}"]
    with tenant_context(hooks.tenant.id):
        async with hooks.kernel.db.transaction() as db:
            for key in keys[:3]:
                enqueue(
                    db, services.DELIVER_ACTOR, {"delivery_id": delivery_id, "attempt": 1}, business_key=key
                )
            enqueue(db, services.FANOUT_ACTOR, {"event_id": done["event_id"]}, business_key=keys[3])
    await hooks.wait_outbox_done(*keys)
    assert len(receiver.at("/once")) == 1
    (again,) = await hooks.deliveries(sub["id"])
    assert again["status"] == "succeeded" and again["attempts"] == 1


async def test_concurrent_copies_of_the_first_attempt_post_once(hooks, receiver, webhook_jobs):
    """Three copies of attempt 1 queued together (before any ran): one POST, the others do nothing."""
    sub = (await hooks.subscribe(receiver.url("/race")))["subscription"]
    with tenant_context(hooks.tenant.id):
        async with hooks.kernel.db.transaction() as db:
            event = emit(db, "code.redeemed", "code-1", {"code_id": "c-1"})
            await db.flush()
            assert await services.fan_out(db, event.id) == 1
            delivery = (await db.execute(select(WebhookDelivery))).scalar_one()
            keys = [f"copy:{delivery.id}:{n}" for n in range(3)]
            for key in keys:
                enqueue(
                    db,
                    services.DELIVER_ACTOR,
                    {"delivery_id": str(delivery.id), "attempt": 1},
                    business_key=key,
                )
    await hooks.wait_outbox_done(f"webhook:{delivery.id}:1", *keys)
    (done,) = await hooks.wait_for(sub["id"], _done(1))
    assert done["attempts"] == 1 and len(receiver.at("/race")) == 1


async def test_410_and_400_fail_without_retry_then_resend_succeeds(hooks, receiver, webhook_jobs):
    gone = (await hooks.subscribe(receiver.url("/gone")))["subscription"]
    bad = (await hooks.subscribe(receiver.url("/bad")))["subscription"]
    receiver.script("/gone", (410, "no such hook"))
    receiver.script("/bad", (400, "x" * 2000))
    await hooks.emit("code.transferred", {"code_id": "c-9"})
    (g,) = await hooks.wait_for(gone["id"], _done(1, "failed"))
    (b,) = await hooks.wait_for(bad["id"], _done(1, "failed"))
    assert g["attempts"] == 1 and g["last_status_code"] == 410 and g["next_attempt_at"] is None
    assert b["last_status_code"] == 400 and b["response_snippet"] == "x" * 500  # capped at 500 characters
    await hooks.fast_forward(minutes=24 * 60)  # a day passes: nothing was scheduled
    assert not await hooks.outbox(f"webhook:{g['id']}:2", f"webhook:{b['id']}:2")
    assert len(receiver.at("/gone")) == 1 and len(receiver.at("/bad")) == 1

    r = await hooks.client.post(f"/api/v1/webhook-deliveries/{g['id']}/resend", headers=hooks.headers)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending"
    (ok,) = await hooks.wait_for(gone["id"], _done(1))
    assert ok["attempts"] == 2 and ok["last_status_code"] == 200
    posts = receiver.at("/gone")
    assert [p.status for p in posts] == [410, 200]
    assert posts[0].headers["kaquan-delivery-id"] == posts[1].headers["kaquan-delivery-id"] == g["id"]

    r = await hooks.client.get(f"/api/v1/webhook-deliveries/{g['id']}", headers=hooks.headers)
    assert r.status_code == 200 and r.json()["status"] == "succeeded"


async def test_429_is_retried_and_a_receiver_that_never_recovers_gives_up(
    hooks, receiver, webhook_jobs, monkeypatch
):
    monkeypatch.setattr(services, "MAX_ATTEMPTS", 3)
    sub = (await hooks.subscribe(receiver.url("/down")))["subscription"]
    receiver.script("/down", (429, "slow down"), (503, "maintenance"), (502, "bad gateway"))
    await hooks.emit("stock.near_expiry", {"product_id": "p-2"})
    await hooks.wait_for(
        sub["id"],
        lambda items: len(items) == 1 and items[0]["attempts"] == 1 and items[0]["last_status_code"] == 429,
    )
    for attempts, code in ((2, 503), (3, 502)):
        await hooks.fast_forward(minutes=60)
        await hooks.wait_for(
            sub["id"],
            lambda items, n=attempts, c=code: items[0]["attempts"] == n and items[0]["last_status_code"] == c,
        )
    (final,) = await hooks.wait_for(sub["id"], _done(1, "gave_up"))
    assert final["attempts"] == 3 and final["last_status_code"] == 502 and final["completed_at"]
    assert [p.status for p in receiver.at("/down")] == [429, 503, 502]


async def test_subscriptions_receive_only_their_event_types(hooks, receiver, webhook_jobs):
    low = (await hooks.subscribe(receiver.url("/low"), ["stock.low"]))["subscription"]
    every = (await hooks.subscribe(receiver.url("/all"), ["*"]))["subscription"]
    grants = (await hooks.subscribe(receiver.url("/grants"), ["grant.created", "grant.delivered"]))[
        "subscription"
    ]
    off = (await hooks.subscribe(receiver.url("/off"), ["*"], active=False))["subscription"]

    await hooks.emit("stock.low")
    await hooks.wait_for(low["id"], _done(1))
    await hooks.wait_for(every["id"], _done(1))
    await hooks.emit("grant.delivered", {"grant_id": "g-2"})
    (g,) = await hooks.wait_for(grants["id"], _done(1))
    assert g["event_type"] == "grant.delivered"
    await hooks.wait_for(every["id"], _done(2))
    assert await hooks.deliveries(off["id"]) == []
    assert len(await hooks.deliveries(low["id"])) == 1
    assert [json.loads(p.body)["type"] for p in receiver.at("/all")] == ["stock.low", "grant.delivered"]
    assert receiver.at("/off") == []

    page = await hooks.client.get(
        f"/api/v1/webhooks/{every['id']}/deliveries", headers=hooks.headers, params={"status": "failed"}
    )
    assert page.status_code == 200 and page.json()["items"] == []
    page = await hooks.client.get(
        f"/api/v1/webhooks/{every['id']}/deliveries", headers=hooks.headers, params={"limit": 1}
    )
    assert len(page.json()["items"]) == 1 and page.json()["next_cursor"]


async def test_a_deactivated_subscription_stops_and_resend_needs_it_active(hooks, receiver, webhook_jobs):
    sub = (await hooks.subscribe(receiver.url("/toggle")))["subscription"]
    receiver.script("/toggle", (404, "not here"))
    await hooks.emit()
    (d,) = await hooks.wait_for(sub["id"], _done(1, "failed"))
    r = await hooks.client.patch(
        f"/api/v1/webhooks/{sub['id']}", headers=hooks.headers, json={"active": False}
    )
    assert r.status_code == 200 and r.json()["active"] is False
    r = await hooks.client.post(f"/api/v1/webhook-deliveries/{d['id']}/resend", headers=hooks.headers)
    assert r.status_code == 409 and r.json()["code"] == "webhook_inactive"
    event_id = await hooks.emit()
    # With no active subscription the event queues no fan-out at all (no relay or job work per event).
    assert await hooks.outbox(f"webhooks:{event_id}") == []
    assert len(await hooks.deliveries(sub["id"])) == 1  # nothing new for an inactive subscription
