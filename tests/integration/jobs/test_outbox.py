"""Transactional outbox: a broker outage loses nothing, the relay delivers later, actors run once."""

from __future__ import annotations

import datetime as dt
import secrets

from dramatiq.brokers.stub import StubBroker
from sqlalchemy import func, select

from core.db.context import tenant_context
from core.jobs.broker import BUSINESS_KEY_OPTION, TENANT_OPTION, build_broker
from core.jobs.models import ProcessedMessage
from core.jobs.relay import relay_once
from tenants.models import User
from tests.integration.jobs.conftest import FAR, held_invite, outbox_row

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


async def test_broker_down_keeps_the_message_then_the_relay_delivers_it_once(
    kernel, settings, make_tenant, jobs
):
    tenant = await make_tenant()
    invite = await held_invite(kernel, tenant.id)

    dead = build_broker(settings, jobs.env, redis_url=DEAD_REDIS, namespace="kaquan-dead")
    report = await relay_once(
        kernel.db, dead, now=FAR, tenant_ids=[tenant.id], business_keys=[invite.business_key]
    )
    assert report.enqueued == 0 and report.failed == 1 and report.broker_error

    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:  # the business change committed regardless
            user = (await db.execute(select(User).where(User.id == invite.user_id))).scalar_one()
            assert user.status == "invited"
    row = await outbox_row(kernel, tenant.id, invite.outbox_id)
    assert row.status == "pending" and row.attempts == 1 and row.last_error
    assert row.available_at > FAR  # backed off
    assert invite.url not in str(row.payload)  # the link rests sealed

    report = await relay_once(
        kernel.db,
        jobs.broker,
        now=FAR + dt.timedelta(hours=1),
        tenant_ids=[tenant.id],
        business_keys=[invite.business_key],
    )
    assert report.enqueued == 1 and report.broker_error is None
    await jobs.drain()

    delivered = jobs.recorder.to(invite.email)
    assert len(delivered) == 1
    note = delivered[0].message
    assert invite.url in note.body and note.template == "invite" and note.channel == "email"
    assert note.subject.startswith("邀请您加入") and note.locale == "zh-CN"  # tenant default locale
    assert note.reference == invite.business_key
    row = await outbox_row(kernel, tenant.id, invite.outbox_id)
    assert row.status == "done"

    again = await relay_once(
        kernel.db,
        jobs.broker,
        now=FAR + dt.timedelta(hours=2),
        tenant_ids=[tenant.id],
        business_keys=[invite.business_key],
    )
    assert again.enqueued == 0 and again.redelivered == 0


async def test_job_messages_carry_the_tenant_and_never_the_plaintext_link(kernel, make_tenant, jobs):
    tenant = await make_tenant()
    invite = await held_invite(kernel, tenant.id)
    token = invite.url.rsplit("/", 1)[1]
    report = await relay_once(
        kernel.db, jobs.broker, now=FAR, tenant_ids=[tenant.id], business_keys=[invite.business_key]
    )
    assert report.enqueued == 1, report
    await jobs.drain()
    sent = [m for m in jobs.capture.messages if m.options.get(BUSINESS_KEY_OPTION) == invite.business_key]
    assert len(sent) == 1
    assert sent[0].options[TENANT_OPTION] == str(tenant.id)
    raw = b"".join(jobs.capture.encoded)
    assert token.encode() not in raw and invite.url.encode() not in raw
    assert len(jobs.recorder.to(invite.email)) == 1


async def test_an_actor_run_twice_does_its_work_once(kernel, make_tenant, jobs):
    tenant = await make_tenant()
    invite = await held_invite(kernel, tenant.id)
    row = await outbox_row(kernel, tenant.id, invite.outbox_id)
    actor = jobs.broker.get_actor("send_notification")
    with tenant_context(tenant.id):
        for _ in range(2):  # the same business message delivered twice (e.g. a redelivery)
            jobs.broker.enqueue(
                actor.message_with_options(
                    kwargs=dict(row.payload), **{BUSINESS_KEY_OPTION: invite.business_key}
                )
            )
    await jobs.drain()
    assert len(jobs.recorder.to(invite.email)) == 1
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            claims = await db.scalar(
                select(func.count())
                .select_from(ProcessedMessage)
                .where(ProcessedMessage.business_key == invite.business_key)
            )
    assert claims == 1


async def test_a_message_the_broker_lost_is_sent_again_and_done_once(kernel, make_tenant, jobs):
    tenant = await make_tenant()
    invite = await held_invite(kernel, tenant.id)
    black_hole = StubBroker()  # accepts the message and never runs it, like a Redis restart without AOF
    black_hole.emit_after("process_boot")
    from core.jobs.registry import declare_actors

    declare_actors(black_hole)
    first = await relay_once(
        kernel.db, black_hole, now=FAR, tenant_ids=[tenant.id], business_keys=[invite.business_key]
    )
    assert first.enqueued == 1
    row = await outbox_row(kernel, tenant.id, invite.outbox_id)
    assert row.status == "enqueued"

    soon = await relay_once(
        kernel.db,
        jobs.broker,
        now=FAR + dt.timedelta(minutes=2),
        tenant_ids=[tenant.id],
        business_keys=[invite.business_key],
    )
    assert soon.redelivered == 0  # not stale yet
    later = await relay_once(  # minutes later, not an hour: the default redelivery time is 5 minutes
        kernel.db,
        jobs.broker,
        now=FAR + dt.timedelta(minutes=5, seconds=1),
        tenant_ids=[tenant.id],
        business_keys=[invite.business_key],
    )
    assert later.redelivered == 1
    await jobs.drain()
    assert len(jobs.recorder.to(invite.email)) == 1
    row = await outbox_row(kernel, tenant.id, invite.outbox_id)
    assert row.status == "done" and row.attempts == 1


async def test_tenant_middleware_sets_tenant_and_worker_actor_per_message(kernel, make_tenant, jobs):
    a, b = await make_tenant(), await make_tenant()
    invites = [
        await held_invite(kernel, t.id, f"{secrets.token_hex(3)}@{t.slug}.example.com") for t in (a, b, a)
    ]
    report = await relay_once(
        kernel.db, jobs.broker, now=FAR, business_keys=[i.business_key for i in invites]
    )
    assert report.enqueued == 3, report
    await jobs.drain()
    for invite in invites:
        (d,) = jobs.recorder.to(invite.email)
        assert d.ctx_tenant == invite.tenant_id == d.context_tenant
        assert d.actor.type == "system" and d.actor.id == "worker"
        slug = a.slug if invite.tenant_id == a.id else b.slug
        assert f"Tenant {slug}" in d.message.body  # rendered from the tenant's own row


async def test_enqueue_inside_a_tenant_context_stamps_the_tenant(kernel, make_tenant, jobs):
    tenant = await make_tenant()
    invite = await held_invite(kernel, tenant.id)
    row = await outbox_row(kernel, tenant.id, invite.outbox_id)
    with tenant_context(tenant.id):
        jobs.broker.get_actor("send_notification").send(**row.payload)  # no explicit tenant option
    await jobs.drain()
    (d,) = jobs.recorder.to(invite.email)
    assert d.context_tenant == tenant.id
    assert jobs.capture.messages[-1].options[TENANT_OPTION] == str(tenant.id)
