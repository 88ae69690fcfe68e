"""Notifications go through the tenant's own notifier account for the channel (its sealed settings, the
template id and its parameters), falling back to the platform's notifier when the tenant has none (or it is
paused); a tenant's raising notifier fails that delivery only, retryably, and shows on its health."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from core.claims.otp import SMS_ACTOR, queue_sms, send_member_sms
from core.connectors.calls import health_recorded
from core.db.context import tenant_context
from core.jobs.context import MessageInfo, reset_job_context, set_job_context
from core.jobs.models import OutboxMessage
from core.notifications.actors import send_notification
from core.notifications.delivery import deliver
from plugins import Notification
from tests.integration.connectors.conftest import GOOD_KEY, SENT, Accounts, PagerConfig


def _message(actor: str, tenant_id: uuid.UUID) -> MessageInfo:
    return MessageInfo(uuid.uuid4().hex, actor, tenant_id, f"{actor}:{uuid.uuid4().hex}", None, 0)


async def test_the_tenants_notifier_account_delivers_with_template_and_params(accounts: Accounts):
    pager = await accounts.connect("test_pager", api_key=GOOD_KEY, sender="ACME")
    env = accounts.app.state.jobs.env
    tokens = set_job_context(env, _message("send_notification", accounts.tenant.id))
    try:
        with tenant_context(accounts.tenant.id):
            await send_notification(
                channel="sms",
                to="+8613800138000",
                template="connector_paused",
                params={"account_name": "抖店", "connector_id": "x", "reason": "expired", "link": "https://k/1"},
            )
    finally:
        reset_job_context(tokens)
    mine = [s for s in SENT if s.account_id == pager["id"] and s.message.template == "connector_paused"]
    assert len(mine) == 1
    sent = mine[0]
    assert isinstance(sent.config, PagerConfig) and sent.config.api_key == GOOD_KEY and sent.config.sender == "ACME"
    assert sent.message.params == {
        "account_name": "抖店",
        "connector_id": "x",
        "reason": "expired",
        "link": "https://k/1",
        "tenant_name": f"Tenant {accounts.tenant.slug}",
    }
    assert "抖店" in sent.message.body and sent.message.reference.startswith("send_notification:")
    await health_recorded()
    health = (await accounts.get(f"/api/v1/connector-accounts/{pager['id']}/health")).json()
    assert health["state"] == "ok"


async def test_member_sms_carry_their_template_parameters(accounts: Accounts):
    pager = await accounts.connect("test_pager", api_key=GOOD_KEY)
    env, kernel = accounts.app.state.jobs.env, accounts.kernel
    with tenant_context(accounts.tenant.id):
        async with kernel.db.transaction() as db:
            cipher = await kernel.keys.cipher(db)
            queue_sms(db, cipher, "+8613800138001", "【ACME】您的验证码为 123456", template="claim_otp",
                      params={"sender": "ACME", "code": "123456", "minutes": "10"}, business_key="otp-test")
        async with kernel.db.transaction() as db:
            row = (await db.execute(select(OutboxMessage).where(OutboxMessage.business_key == "otp-test"))).scalar_one()
            sealed = row.payload["sealed"]
    assert "123456" not in str(row.payload)  # the parameters travel sealed, like the text
    tokens = set_job_context(env, _message(SMS_ACTOR, accounts.tenant.id))
    try:
        with tenant_context(accounts.tenant.id):
            await send_member_sms(template="claim_otp", sealed=sealed)
    finally:
        reset_job_context(tokens)
    sent = [s for s in SENT if s.account_id == pager["id"] and s.message.template == "claim_otp"]
    assert len(sent) == 1 and sent[0].message.params == {"sender": "ACME", "code": "123456", "minutes": "10"}


async def test_without_an_account_or_with_a_paused_one_the_platform_notifier_delivers(accounts: Accounts):
    env = accounts.app.state.jobs.env
    note = Notification(channel="sms", to="+8613800138002", subject="", body="hi", template="t", reference="r1")
    with tenant_context(accounts.tenant.id):
        connector_id, _result = await deliver(env, accounts.tenant.id, note)
    assert connector_id == "log_notifier" and not [s for s in SENT if s.message.reference == "r1"]
    pager = await accounts.connect("test_pager", api_key=GOOD_KEY)
    with tenant_context(accounts.tenant.id):
        assert (await deliver(env, accounts.tenant.id, note))[0] == "test_pager"
    await accounts.post(f"/api/v1/connector-accounts/{pager['id']}/pause")
    with tenant_context(accounts.tenant.id):
        assert (await deliver(env, accounts.tenant.id, note))[0] == "log_notifier"
    assert len([s for s in SENT if s.message.reference == "r1"]) == 1


async def test_a_raising_notifier_fails_only_its_tenants_delivery(accounts: Accounts, make_tenant, make_api_client, all_connectors_plan):
    raising = await accounts.connect("test_raising", token="tok-abcdef123")
    other_tenant = await make_tenant(plan=all_connectors_plan)
    other = Accounts(other_tenant, await make_api_client(other_tenant, ["connectors:manage", "connectors:read"]),
                     accounts.client, accounts.kernel, accounts.app)
    pager = await other.connect("test_pager", api_key=GOOD_KEY)
    env = accounts.app.state.jobs.env
    note = Notification(channel="sms", to="+8613800138003", subject="", body="hi", template="t", reference="r2")
    with tenant_context(accounts.tenant.id):
        connector_id, result = await deliver(env, accounts.tenant.id, note)
    assert connector_id == "test_raising"
    assert result.status == "failed" and result.retryable and result.detail.startswith("raised: RuntimeError")
    with tenant_context(other_tenant.id):
        connector_id, result = await deliver(env, other_tenant.id, note)
    assert connector_id == "test_pager" and result.status == "sent"
    assert [s.account_id for s in SENT if s.message.reference == "r2"] == [pager["id"]]
    await health_recorded()
    health = (await accounts.get(f"/api/v1/connector-accounts/{raising['id']}/health")).json()
    assert health["state"] == "failing" and health["consecutive_failures"] == 1
    assert (await other.get(f"/api/v1/connector-accounts/{pager['id']}/health")).json()["state"] == "ok"
