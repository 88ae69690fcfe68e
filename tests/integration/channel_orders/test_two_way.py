"""Two-way redemption (核销) and refunds decided in the callback for channels with ``third_party_codes``:
a code is never redeemed on both sides, a refund of a redeemed code is refused in the reply, a notice
replayed six times gets the same answer, and a rolled-back store redemption reopens the channel's code.

Every test runs against three channels: the test connector, the built-in ``sandbox`` and the built-in
``locallife`` talking to its fake platform (``tests/fakes/channel_servers.py: FakeLocalLife``) over HTTP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, select

from core.channel_orders.models import ChannelMessage, ChannelOrderCode, ChannelRefund
from core.connectors.calls import bind_account, seal_secrets
from core.connectors.models import AccountRoute, ConnectorAccount
from core.db.context import tenant_context
from core.events.models import Event
from core.inventory.models import Code
from core.inventory.vault import digest_of
from core.redemption.models import Redemption
from plugins import (
    ChannelEvent,
    ChannelRedemption,
    IssueRequest,
    OrderLine,
    RefundNotice,
    StockItem,
    StockPush,
    StockPushResult,
)
from plugins import ChannelOrder as OrderIn
from plugins.builtin import locallife_channel, sandbox_channel
from tests.fakes.channel_servers import FakeLocalLife, SignedCall
from tests.integration.channel_orders.fake_channel import (
    ChannelShop,
    add_listing,
    connect_account,
    event_body,
    post_callback,
    run_jobs,
)
from tests.integration.inventory.stocking import stock_product

NOW = dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Answer:
    """The channel's reading of kaquan's reply: does its action stand (``ok``), and why not."""

    http: int
    ok: bool
    reason: str


class Driver:
    """One channel as its platform behaves: issues orders, verifies codes, asks for refunds, reads replies."""

    name = ""
    shop: ChannelShop
    sku = "TW-1"

    async def post(self, client: Any, call: Any) -> Any:
        raise NotImplementedError

    def answer(self, response: Any) -> Answer:
        raise NotImplementedError

    async def issue(self, client: Any, quantity: int) -> tuple[str, list[dict[str, str]]]:
        """A buyer pays: the issue request, answered with the codes; (order id, [{code, pin}])."""
        raise NotImplementedError

    def verify(self, order_id: str, code: str) -> Any:
        """The channel verified ``code``: the notice it sends (post it again to replay it)."""
        raise NotImplementedError

    def refund(self, order_id: str, quantity: int) -> Any:
        raise NotImplementedError

    def read(self, call: Any, response: Any) -> bool:
        """The platform reads the reply (a refusal undoes its action); True when its action stands."""
        return self.answer(response).ok


class ChannelDriver(Driver):
    name = "test"

    def __init__(self) -> None:
        self.n = 0

    async def post(self, client: Any, call: Any) -> Any:
        return await post_callback(client, self.shop, event_body(call))

    def answer(self, response: Any) -> Answer:
        out = json.loads(response.content) if response.status_code == 200 else {}
        return Answer(response.status_code, out.get("status") in ("accepted", "duplicate"), out.get("reason", ""))

    async def issue(self, client: Any, quantity: int) -> tuple[str, list[dict[str, str]]]:
        self.n += 1
        order_id = f"TW-{self.n}-{uuid.uuid4().hex[:6]}"
        order = OrderIn(order_id=order_id, placed_at=NOW,
                        lines=[OrderLine(line_id="1", sku=self.sku, quantity=quantity, unit_price_fen=990)])
        event = ChannelEvent(message_id=f"iss-{order_id}", type="code.issue", occurred_at=NOW,
                             issue=IssueRequest(order=order))
        out = json.loads((await self.post(client, event)).content)
        return order_id, [{"code": c["code"], "pin": c["pin"]} for c in out["codes"]]

    def verify(self, order_id: str, code: str) -> Any:
        self.n += 1
        return ChannelEvent(message_id=f"vf-{self.n}", type="code.redeemed", occurred_at=NOW,
                            redemption=ChannelRedemption(order_id=order_id, code=code, redeemed_at=NOW,
                                                         reference=f"ch-{self.n}", store="门店 1"))

    def refund(self, order_id: str, quantity: int) -> Any:
        self.n += 1
        return ChannelEvent(message_id=f"rf-{self.n}", type="order.refunded", occurred_at=NOW,
                            refund=RefundNotice(order_id=order_id, line_id="1", refund_id=f"R-{self.n}",
                                                quantity=quantity, amount_fen=990 * quantity))


class Sandbox(Driver):
    name = "sandbox"

    async def post(self, client: Any, call: Any) -> Any:
        request = sandbox_channel.signed_callback(self.shop.secret, call)
        return await client.post(f"/channels/{self.shop.account_id}/callback", content=request.body,
                                 headers=request.headers)

    def answer(self, response: Any) -> Answer:
        out = json.loads(response.content) if response.status_code == 200 else {}
        return Answer(response.status_code, bool(out.get("ok")), out.get("reason", ""))

    async def issue(self, client: Any, quantity: int) -> tuple[str, list[dict[str, str]]]:
        event = sandbox_channel.issue_request(self.shop.account_id, self.sku, quantity)
        assert event.issue is not None
        response = await self.post(client, event)
        reply = sandbox_channel.CallbackReply(status=response.status_code, body=response.content)
        codes = sandbox_channel.record_issued(self.shop.account_id, event.issue.order.order_id, reply)
        return event.issue.order.order_id, [{"code": c.code, "pin": c.pin} for c in codes]

    def _last(self) -> ChannelEvent:
        return sandbox_channel.WORLD.shop(self.shop.account_id).events[-1]

    def verify(self, order_id: str, code: str) -> Any:
        assert sandbox_channel.redeem_on_channel(self.shop.account_id, code) is not None
        return self._last()

    def refund(self, order_id: str, quantity: int) -> Any:
        sandbox_channel.refund(self.shop.account_id, order_id, quantity=quantity)
        return self._last()

    def read(self, call: Any, response: Any) -> bool:
        reply = sandbox_channel.CallbackReply(status=response.status_code, body=response.content)
        return sandbox_channel.read_reply(self.shop.account_id, call, reply)


class LocalLife(Driver):
    name = "locallife"

    def __init__(self, fake: FakeLocalLife) -> None:
        self.fake = fake

    async def post(self, client: Any, call: SignedCall) -> Any:
        return await client.post(f"/channels/{self.shop.account_id}/callback", content=call.body,
                                 headers=call.headers)

    def answer(self, response: Any) -> Answer:
        data = json.loads(response.content).get("data", {})
        ok = response.status_code == 200 and data.get("error_code") == 0 and data.get("result") == 1
        return Answer(response.status_code, ok, "" if ok else str(data.get("description", "")))

    async def issue(self, client: Any, quantity: int) -> tuple[str, list[dict[str, str]]]:
        call = self.fake.buy(self.sku, quantity)
        order_id = call.message["content"]["order_id"]
        response = await self.post(client, call)
        assert self.fake.take_issue_reply(order_id, response.content)
        codes = json.loads(response.content)["data"]["codes"]
        return order_id, [{"code": c["code"], "pin": c["pin"]} for c in codes]

    def verify(self, order_id: str, code: str) -> Any:
        return self.fake.verify_on_channel(code)

    def refund(self, order_id: str, quantity: int) -> Any:
        return self.fake.refund_request(order_id, quantity)

    def read(self, call: SignedCall, response: Any) -> bool:
        if call.message["type"] == "verify_notify":
            return self.fake.take_verify_reply(call.message["content"]["code"], response.content)
        return self.answer(response).ok


async def _account(kernel: Any, tenant_id: uuid.UUID, connector: str, config: dict[str, Any],
                   secrets: dict[str, str]) -> ChannelShop:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            account = ConnectorAccount(connector_id=connector, kind="sales_channel", name=connector, config=config)
            db.add(account)
            await db.flush()
            account.secrets = seal_secrets(await kernel.keys.cipher(db), account.id, secrets)
            db.add(AccountRoute(account_id=account.id, tenant_id=tenant_id))
            return ChannelShop(tenant_id, account.id, next(iter(secrets.values())))


@dataclass
class World:
    """A tenant with a stocked product listed on one channel, and that channel's driver."""

    tenant_id: uuid.UUID
    headers: dict[str, str]
    driver: Driver


@pytest.fixture(params=["test", "sandbox", "locallife"])
async def world(request, client, kernel, app, make_tenant, make_api_client, channel, quiet_relay
                ) -> AsyncIterator[World]:
    host = app.state.jobs.plugins
    for module, name in ((sandbox_channel, "sandbox_channel"), (locallife_channel, "locallife_channel")):
        if module.CONNECTOR.info.id not in host.connectors():  # the entry point, when the metadata predates it
            host.register(module, name=name)
    tenant = await make_tenant(plan="growth")
    creds = await make_api_client(tenant)
    stocked = await stock_product(kernel, tenant.id, 10, unit_cost=700)
    fake: FakeLocalLife | None = None
    driver: Driver
    if request.param == "test":
        driver = ChannelDriver()
        driver.shop = await connect_account(kernel, tenant.id)
    elif request.param == "sandbox":
        driver = Sandbox()
        driver.shop = await _account(kernel, tenant.id, "sandbox", {"shop_name": "沙盒"},
                                     {"signing_secret": "sbx-" + uuid.uuid4().hex})
    else:
        secret = "ll-" + uuid.uuid4().hex
        fake = FakeLocalLife(client_secret=secret)
        fake.start()
        driver = LocalLife(fake)
        driver.shop = await _account(kernel, tenant.id, "locallife", {
            "base_url": fake.url, "client_key": fake.client_key, "account_id": "acc-9", "poi_id": "poi-main",
            "timeout_seconds": 3}, {"client_secret": secret})
    listing = await add_listing(kernel, driver.shop, stocked.product_id, driver.sku, 8)
    if request.param == "sandbox":  # the shop sells what was pushed to it
        with tenant_context(tenant.id):
            async with kernel.db.transaction() as db:
                bound = await bind_account(db, await kernel.keys.cipher(db), host, driver.shop.account_id)
        push = StockPush(reference="p1", items=[StockItem(sku=driver.sku, listing_id=str(listing), available=8,
                                                          price_fen=1990, version=1)])
        assert (await bound.call("push_stock", push, expect=StockPushResult)).items[0].status == "ok"
    try:
        yield World(tenant.id, creds.headers, driver)
    finally:
        if fake is not None:
            fake.stop()


async def _facts(kernel: Any, tenant_id: uuid.UUID, code: str) -> dict[str, Any]:
    """The code's state, its channel order code's state and side, its live redemptions, channel events."""
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            digest = digest_of(await kernel.keys.cipher(db), code)
            code_row = (await db.execute(select(Code).where(Code.digest == digest))).scalar_one()
            held = (await db.execute(select(ChannelOrderCode).where(ChannelOrderCode.code_id == code_row.id))
                    ).scalar_one()
            live = await db.scalar(select(func.count()).select_from(Redemption).where(
                Redemption.code_id == code_row.id, Redemption.status == "redeemed"))
            events = list((await db.execute(select(Event.type).where(Event.type.like("channel.redemption%"))
                                            )).scalars())
            return {"code": code_row.state, "held": held.state, "via": held.redeemed_via, "live": live,
                    "reported": held.reported_at is not None, "events": events, "code_id": code_row.id}


async def _store_redeem(client: Any, headers: dict[str, str], code: dict[str, str]) -> Any:
    return await client.post("/api/v1/redemptions", json={"code": code["code"], "pin": code["pin"],
                                                          "store": "S1"}, headers=headers)


async def test_a_channel_verification_of_a_code_redeemed_in_a_store_is_refused(client, kernel, app, world):
    d = world.driver
    order_id, codes = await d.issue(client, 1)
    r = await _store_redeem(client, world.headers, codes[0])
    assert r.status_code == 201, r.text
    # the channel verifies the same code before our report reached it: refused in the reply
    notice = d.verify(order_id, codes[0]["code"])
    response = await d.post(client, notice)
    answer = d.answer(response)
    assert response.status_code == 200 and not answer.ok
    assert "already_redeemed" in answer.reason
    assert d.read(notice, response) is False  # the platform undoes its verification
    assert await run_jobs(app, world.tenant_id) == []  # our report then reaches the channel
    facts = await _facts(kernel, world.tenant_id, codes[0]["code"])
    assert (facts["code"], facts["held"], facts["via"], facts["live"]) == ("redeemed", "redeemed", "kaquan", 1)
    assert facts["reported"] and "channel.redemption_conflict" not in facts["events"]
    if isinstance(d, LocalLife):
        assert d.fake.codes[codes[0]["code"]]["state"] == "verified_by_merchant"
        assert d.fake.verifications[codes[0]["code"]] == 1
    if isinstance(d, Sandbox):
        assert sandbox_channel.WORLD.shop(d.shop.account_id).redeemed[codes[0]["code"]] == "kaquan"


async def test_a_store_redemption_after_a_channel_verification_is_refused(client, kernel, app, world):
    d = world.driver
    order_id, codes = await d.issue(client, 1)
    notice = d.verify(order_id, codes[0]["code"])
    response = await d.post(client, notice)
    assert d.answer(response).ok and d.read(notice, response)
    r = await _store_redeem(client, world.headers, codes[0])
    assert r.status_code == 409 and r.json()["code"] == "already_redeemed"
    assert await run_jobs(app, world.tenant_id) == []
    facts = await _facts(kernel, world.tenant_id, codes[0]["code"])
    assert (facts["code"], facts["held"], facts["via"], facts["live"]) == ("redeemed", "redeemed", "channel", 1)
    if isinstance(d, LocalLife):
        assert d.fake.codes[codes[0]["code"]]["state"] == "verified_here"
        assert codes[0]["code"] not in d.fake.verifications  # nothing reported back


async def test_a_refund_of_a_redeemed_code_is_refused_and_of_an_open_one_agreed(client, kernel, app, world):
    d = world.driver
    order_id, codes = await d.issue(client, 2)
    assert (await _store_redeem(client, world.headers, codes[0])).status_code == 201
    refund = d.refund(order_id, 2)  # both units: one is redeemed
    response = await d.post(client, refund)
    answer = d.answer(response)
    assert response.status_code == 200 and not answer.ok and "channel_refund_redeemed" in answer.reason
    assert d.read(refund, response) is False
    with tenant_context(world.tenant_id):
        async with kernel.db.transaction() as db:
            assert await db.scalar(select(func.count()).select_from(ChannelRefund)) == 0
            states = sorted((await db.execute(select(ChannelOrderCode.state))).scalars())
    assert states == ["delivered", "redeemed"]  # nothing returned, nothing voided

    one = d.refund(order_id, 1)  # the unit still open can be refunded
    response = await d.post(client, one)
    assert d.answer(response).ok and d.read(one, response)
    with tenant_context(world.tenant_id):
        async with kernel.db.transaction() as db:
            assert await db.scalar(select(func.count()).select_from(ChannelRefund)) == 1
            states = sorted((await db.execute(select(ChannelOrderCode.state))).scalars())
    assert states == ["redeemed", "voided"]  # the buyer had seen it: voided, not back in stock
    facts = await _facts(kernel, world.tenant_id, codes[0]["code"])
    assert (facts["code"], facts["live"]) == ("redeemed", 1)


async def test_a_notice_replayed_six_times_gets_the_same_answer(client, kernel, app, world):
    d = world.driver
    order_id, codes = await d.issue(client, 2)
    verified = d.verify(order_id, codes[0]["code"])
    assert (await _store_redeem(client, world.headers, codes[1])).status_code == 201
    refused = d.verify(order_id, codes[1]["code"])
    refund = d.refund(order_id, 2)
    for notice in (verified, refused, refund):
        answers = set()
        for _ in range(6):  # Douyin retries up to six times over ten minutes
            response = await d.post(client, notice)
            answers.add((response.status_code, d.answer(response)))
        assert len(answers) == 1, answers
    oks = [d.answer(await d.post(client, n)).ok for n in (verified, refused, refund)]
    assert oks == [True, False, False]
    facts = await _facts(kernel, world.tenant_id, codes[0]["code"])
    assert (facts["code"], facts["via"], facts["live"]) == ("redeemed", "channel", 1)
    facts = await _facts(kernel, world.tenant_id, codes[1]["code"])
    assert (facts["code"], facts["via"], facts["live"]) == ("redeemed", "kaquan", 1)
    with tenant_context(world.tenant_id):
        async with kernel.db.transaction() as db:
            messages = list((await db.execute(select(ChannelMessage.status).where(
                ChannelMessage.type != "code.issue").order_by(ChannelMessage.id))).scalars())
            assert await db.scalar(select(func.count()).select_from(Redemption)) == 2
    assert messages == ["done", "failed", "failed"]  # one stored message per notice, with its outcome


async def test_a_rolled_back_store_redemption_reopens_the_channel_code(client, kernel, app, world):
    d = world.driver
    order_id, codes = await d.issue(client, 2)
    r = await _store_redeem(client, world.headers, codes[0])
    assert r.status_code == 201
    # rolled back before the report ran: the code reopens, the queued report tells the channel nothing
    back = await client.post(f"/api/v1/redemptions/{r.json()['id']}/rollback", json={"reason": "wrong code"},
                             headers=world.headers)
    assert back.status_code == 200, back.text
    assert await run_jobs(app, world.tenant_id) == []
    facts = await _facts(kernel, world.tenant_id, codes[0]["code"])
    assert (facts["code"], facts["held"], facts["via"], facts["reported"]) == ("issued", "delivered", "", False)
    assert "channel.redemption_rolled_back" not in facts["events"]
    if isinstance(d, LocalLife):
        assert codes[0]["code"] not in d.fake.verifications

    # redeemed again, reported, then rolled back: the channel knew, so a person is asked to tell it
    r = await _store_redeem(client, world.headers, codes[0])
    assert r.status_code == 201, r.text
    assert await run_jobs(app, world.tenant_id) == []
    assert (await _facts(kernel, world.tenant_id, codes[0]["code"]))["reported"]  # reported again
    back = await client.post(f"/api/v1/redemptions/{r.json()['id']}/rollback", json={"reason": "wrong store"},
                             headers=world.headers)
    assert back.status_code == 200, back.text
    facts = await _facts(kernel, world.tenant_id, codes[0]["code"])
    assert (facts["code"], facts["held"], facts["via"], facts["live"]) == ("issued", "delivered", "", 0)
    assert facts["events"].count("channel.redemption_rolled_back") == 1

    # a channel's own verification rolled back here: reopened too, and the channel must be told
    notice = d.verify(order_id, codes[1]["code"])
    assert d.answer(await d.post(client, notice)).ok
    facts = await _facts(kernel, world.tenant_id, codes[1]["code"])
    with tenant_context(world.tenant_id):
        async with kernel.db.transaction() as db:
            rid = await db.scalar(select(Redemption.id).where(Redemption.code_id == facts["code_id"],
                                                              Redemption.status == "redeemed"))
    back = await client.post(f"/api/v1/redemptions/{rid}/rollback", json={"reason": "channel asked"},
                             headers=world.headers)
    assert back.status_code == 200, back.text
    facts = await _facts(kernel, world.tenant_id, codes[1]["code"])
    assert (facts["held"], facts["via"]) == ("delivered", "")
    assert facts["events"].count("channel.redemption_rolled_back") == 2


def test_the_decision_rule_is_the_capability():
    from core.channel_orders.decisions import decided_now

    event = msgspec.convert({"message_id": "m", "type": "code.redeemed", "occurred_at": NOW.isoformat()},
                            ChannelEvent)
    assert decided_now(frozenset({"third_party_codes"}), event)
    assert not decided_now(frozenset({"callbacks", "redemption_sync"}), event)
    issue = msgspec.structs.replace(event, type="code.issue")
    assert not decided_now(frozenset({"third_party_codes"}), issue)


async def test_a_store_scan_racing_a_channel_verification_redeems_once(client, kernel, app, world):
    """The two sides at the same moment (real concurrency on PostgreSQL): exactly one wins each code, the
    other is refused — in the reply for the channel, ``409 already_redeemed`` for the store."""
    d = world.driver
    order_id, codes = await d.issue(client, 4)
    for code in codes:
        notice = d.verify(order_id, code["code"])
        store, channel_reply = await asyncio.gather(_store_redeem(client, world.headers, code),
                                                    d.post(client, notice))
        channel_won = d.answer(channel_reply).ok
        assert channel_reply.status_code == 200
        assert (store.status_code == 201) != channel_won, (store.text, channel_reply.content)
        if not channel_won:
            assert store.status_code == 201 and "already_redeemed" in d.answer(channel_reply).reason
        else:
            assert store.status_code == 409 and store.json()["code"] == "already_redeemed"
        facts = await _facts(kernel, world.tenant_id, code["code"])
        assert (facts["code"], facts["held"], facts["live"]) == ("redeemed", "redeemed", 1)
        assert facts["via"] == ("channel" if channel_won else "kaquan")
