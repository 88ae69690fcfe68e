"""Expiry reminders (沉睡券): one reminder per member per run, each item reminded once, the tenant's window,
members without contact skipped and counted, delivery by SMS or e-mail, and two runs at once on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, update

from core.audit.models import AuditEvent
from core.db.base import utcnow
from core.db.context import tenant_context
from core.errors import ValidationFailed
from core.grants.models import GrantItem
from core.jobs.broker import BUSINESS_KEY_OPTION
from core.jobs.models import OutboxMessage
from core.reminders.services import (
    REMINDER_ACTOR,
    ReminderSettingIn,
    get_setting,
    run_reminders,
    set_setting,
)
from tests.integration.reminders.conftest import DAY, hold, phone, run


async def set_status(kernel: Any, tenant_id: uuid.UUID, item_ids: list[uuid.UUID], status: str) -> None:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            await db.execute(update(GrantItem).where(GrantItem.id.in_(item_ids)).values(status=status))


async def reminders(kernel: Any, tenant_id: uuid.UUID) -> list[OutboxMessage]:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            q = (
                select(OutboxMessage)
                .where(OutboxMessage.actor == REMINDER_ACTOR)
                .order_by(OutboxMessage.created_at)
            )
            return list((await db.execute(q)).scalars())


async def reminded(kernel: Any, tenant_id: uuid.UUID) -> set[uuid.UUID]:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            q = select(GrantItem.id).where(GrantItem.reminded_at.is_not(None))
            return set((await db.execute(q)).scalars())


async def test_members_are_reminded_once_and_only_for_held_items_in_the_window(kernel, make_tenant):
    tenant = await make_tenant()
    tid = tenant.id
    a_phone = phone()
    a = await hold(kernel, tid, 2 * DAY, quantity=2, phone=a_phone)
    a_later = await hold(kernel, tid, 10 * DAY, phone=a_phone)  # outside the default 3-day window
    b = await hold(kernel, tid, DAY, email="b.member@example.com")
    b_redeemed = await hold(kernel, tid, DAY, email="b.member@example.com")
    b_transferred = await hold(kernel, tid, DAY, email="b.member@example.com")
    await set_status(kernel, tid, b_redeemed.item_ids, "redeemed")
    await set_status(kernel, tid, b_transferred.item_ids, "transferred")
    past = await hold(kernel, tid, DAY, phone=phone())
    with tenant_context(tid):
        async with kernel.db.transaction() as db:  # expired since it was granted
            await db.execute(
                update(GrantItem)
                .where(GrantItem.id.in_(past.item_ids))
                .values(expires_at=utcnow() - dt.timedelta(hours=1))
            )
    nobody = await hold(kernel, tid, 2 * DAY, external_id=f"emp-{secrets.token_hex(3)}")
    assert a.member_id == a_later.member_id and b.member_id == b_redeemed.member_id

    first = await run(kernel, tid)
    assert (first.members_reminded, first.items_reminded, first.members_without_contact) == (2, 3, 1)
    assert first.days_before == 3
    messages = await reminders(kernel, tid)
    payloads = {m.payload["member_id"]: m.payload for m in messages}
    assert payloads == {
        str(a.member_id): {
            "member_id": str(a.member_id),
            "item_ids": sorted(str(i) for i in a.item_ids),
            "channel": "sms",
        },
        str(b.member_id): {
            "member_id": str(b.member_id),
            "item_ids": [str(b.item_ids[0])],
            "channel": "email",
        },
    }
    assert all(a_phone not in str(m.payload) for m in messages)  # the phone never travels in a job payload
    assert await reminded(kernel, tid) == {*a.item_ids, *b.item_ids}
    assert nobody.item_ids[0] not in await reminded(kernel, tid)  # a contact added later still gets one

    second = await run(kernel, tid)
    assert (second.members_reminded, second.items_reminded, second.members_without_contact) == (0, 0, 1)
    assert len(await reminders(kernel, tid)) == 2
    with tenant_context(tid):
        async with kernel.db.transaction() as db:
            audited = await db.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "grant_items.reminded")
            )
    assert audited == 2


async def test_the_window_is_a_tenant_setting(kernel, make_tenant):
    tenant = await make_tenant()
    tid = tenant.id
    later = await hold(kernel, tid, 10 * DAY, phone=phone())
    with tenant_context(tid):
        async with kernel.db.transaction() as db:
            assert (await get_setting(db)).days_before == 3
            with pytest.raises(ValidationFailed):
                await set_setting(db, ReminderSettingIn(days_before=0))
            await set_setting(db, ReminderSettingIn(enabled=False))
    off = await run(kernel, tid)
    assert off.enabled is False and off.members_reminded == 0
    with tenant_context(tid):
        async with kernel.db.transaction() as db:
            setting = await set_setting(db, ReminderSettingIn(days_before=14, enabled=True))
    assert (setting.days_before, setting.enabled) == (14, True)
    on = await run(kernel, tid)
    assert (on.members_reminded, on.items_reminded, on.days_before) == (1, 1, 14)
    assert await reminded(kernel, tid) == set(later.item_ids)


async def test_the_reminder_is_delivered_once_by_sms_or_email(kernel, make_tenant, jobs):
    tenant = await make_tenant()
    tid = tenant.id
    number = phone()
    await hold(kernel, tid, 2 * DAY, quantity=2, phone=number, name="张三")
    await hold(kernel, tid, DAY, email="li.si@example.com")
    await run(kernel, tid)
    messages = await reminders(kernel, tid)
    assert len(messages) == 2
    actor = jobs.broker.get_actor(REMINDER_ACTOR)
    with tenant_context(tid):
        for m in messages + messages[:1]:  # the first message delivered twice (a redelivery)
            jobs.broker.enqueue(
                actor.message_with_options(
                    kwargs=dict(m.payload), **{BUSINESS_KEY_OPTION: f"test:{m.business_key}"}
                )
            )
    await jobs.drain()
    (sms,) = jobs.recorder.to(f"+86{number}")
    assert sms.message.channel == "sms" and sms.message.template == "expiry_reminder"
    assert "张三" in sms.message.body and "2 张券" in sms.message.body and "测试券 ×2" in sms.message.body
    (mail,) = jobs.recorder.to("li.si@example.com")
    assert mail.message.channel == "email" and "1 张券" in mail.message.subject
    raw = b"".join(jobs.capture.encoded)
    assert number.encode() not in raw and b"li.si@example.com" not in raw


async def test_two_runs_at_once_remind_each_member_once(kernel, make_tenant, test_env):
    if test_env.backend != "postgresql":
        pytest.skip("concurrency is tested on PostgreSQL")
    tenant = await make_tenant()
    tid = tenant.id
    held = [await hold(kernel, tid, DAY, quantity=1 + i % 2, phone=phone()) for i in range(30)]
    with tenant_context(tid):
        runs = await asyncio.gather(
            run_reminders(kernel.db), run_reminders(kernel.db), run_reminders(kernel.db)
        )
    assert sum(r.members_reminded for r in runs) == 30
    assert sum(r.items_reminded for r in runs) == sum(len(h.item_ids) for h in held)
    messages = await reminders(kernel, tid)
    assert len(messages) == 30 and len({m.payload["member_id"] for m in messages}) == 30
    assert await reminded(kernel, tid) == {i for h in held for i in h.item_ids}


async def test_reminder_settings_api_per_tenant(client, make_tenant, make_api_client):
    a, b = await make_tenant(), await make_tenant()
    creds_a, creds_b = await make_api_client(a), await make_api_client(b)
    r = await client.get("/api/v1/reminder-settings", headers=creds_a.headers)
    assert r.status_code == 200 and r.json() == {"days_before": 3, "enabled": True}
    r = await client.put("/api/v1/reminder-settings", headers=creds_a.headers, json={"days_before": 7})
    assert r.status_code == 200 and r.json() == {"days_before": 7, "enabled": True}
    for bad in ({"days_before": 0}, {"days_before": 91}, {"days_before": "x"}, {"nope": 1}):
        r = await client.put("/api/v1/reminder-settings", headers=creds_a.headers, json=bad)
        assert r.status_code in (400, 422) and r.headers["content-type"] == "application/problem+json", bad
    r = await client.get("/api/v1/reminder-settings", headers=creds_b.headers)
    assert r.json() == {"days_before": 3, "enabled": True}  # tenant B never sees tenant A's setting
    reader = await make_api_client(a, ["grants:read"])
    r = await client.put("/api/v1/reminder-settings", headers=reader.headers, json={"enabled": False})
    assert r.status_code == 403
    r = await client.get("/api/v1/reminder-settings", headers=reader.headers)
    assert r.json() == {"days_before": 7, "enabled": True}
