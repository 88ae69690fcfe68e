"""A test-local sales channel connector (registered on the app's plugin host) and helpers to set a tenant up
with a channel account, listings and stock, to sign callbacks and to run the channel-order jobs.

The connector keeps its state per account in memory: the deliveries it took (by reference, so a repeated
delivery is taken once), the redemption reports, the events it serves to ``pull_orders``; tests can make
deliveries fail (retryable or rejected), and make calls hang or raise.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import select, update

from core.channels.models import Listing
from core.connectors.calls import seal_secrets
from core.connectors.models import AccountRoute, ConnectorAccount
from core.db.context import tenant_context
from core.jobs.context import MessageInfo, reset_job_context, set_job_context
from core.jobs.models import OutboxMessage
from core.jobs.registry import load_job_modules
from plugins import (
    BadCallback,
    CallbackOutcome,
    CallbackReply,
    CallbackRequest,
    CallResult,
    ChannelEvent,
    ChannelRedemption,
    CheckResult,
    CodeDelivery,
    ConnectorContext,
    ConnectorInfo,
    OrderPage,
    Secret,
    hookimpl,
)

CONNECTOR_ID = "test_orders_channel"
SIGNATURE = "x-test-signature"
ACTORS = ("process_channel_message", "deliver_channel_order", "report_channel_redemption")


class FakeChannelConfig(msgspec.Struct, frozen=True, kw_only=True):
    shop: str = "shop"
    secret: Secret = ""


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class AccountState:
    deliveries: dict[str, CodeDelivery] = field(default_factory=dict)
    delivery_calls: int = 0
    fail_deliveries: int = 0  # the next N delivery calls fail (retryable)
    reject_deliveries: bool = False
    hang: bool = False
    reports: dict[str, ChannelRedemption] = field(default_factory=dict)
    events: list[ChannelEvent] = field(default_factory=list)
    page_size: int = 2


@dataclass
class FakeChannel:
    info = ConnectorInfo(
        id=CONNECTOR_ID,
        kind="sales_channel",
        display_name="Test channel (orders)",
        config=FakeChannelConfig,
        capabilities=frozenset(
            {"order_pull", "callbacks", "delivery", "refunds", "third_party_codes", "redemption_sync"}
        ),
    )
    accounts: dict[str, AccountState] = field(default_factory=lambda: defaultdict(AccountState))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def state(self, account_id: uuid.UUID | str) -> AccountState:
        with self.lock:
            return self.accounts[str(account_id)]

    async def check(self, ctx: ConnectorContext) -> CheckResult:
        return CheckResult(ok=True)

    async def parse_callback(self, ctx: ConnectorContext, request: CallbackRequest) -> ChannelEvent:
        secret = ctx.config.secret  # type: ignore[attr-defined]
        given = request.headers.get(SIGNATURE, "")
        if not given or not hmac.compare_digest(given, sign(secret, request.body)):
            raise BadCallback("bad signature", signature=True)
        try:
            return msgspec.json.decode(request.body, type=ChannelEvent)
        except msgspec.DecodeError as exc:
            raise BadCallback(f"malformed body: {exc}") from None

    def callback_reply(
        self, ctx: ConnectorContext, event: ChannelEvent | None, outcome: CallbackOutcome
    ) -> CallbackReply:
        return CallbackReply(status=200, body=msgspec.json.encode(outcome))

    async def deliver_codes(self, ctx: ConnectorContext, delivery: CodeDelivery) -> CallResult:
        st = self.state(ctx.account_id)
        if st.hang:
            await asyncio.sleep(60)
        with self.lock:
            st.delivery_calls += 1
            if st.reject_deliveries:
                return CallResult(status="rejected", detail="order closed")
            if st.fail_deliveries > 0:
                st.fail_deliveries -= 1
                return CallResult(status="failed", retryable=True, detail="503 from channel")
            st.deliveries.setdefault(delivery.reference, delivery)
        return CallResult(status="ok", channel_ref=f"dl-{delivery.reference}")

    async def report_redemption(self, ctx: ConnectorContext, redemption: ChannelRedemption) -> CallResult:
        st = self.state(ctx.account_id)
        with self.lock:
            st.reports.setdefault(redemption.reference, redemption)
        return CallResult(status="ok")

    async def pull_orders(self, ctx: ConnectorContext, cursor: str) -> OrderPage:
        st = self.state(ctx.account_id)
        start = int(cursor or 0)
        page = st.events[start : start + st.page_size]
        end = start + len(page)
        return OrderPage(events=page, next_cursor=str(end), has_more=end < len(st.events))


class FakeChannelPlugin:
    def __init__(self, channel: FakeChannel) -> None:
        self.channel = channel

    @hookimpl
    def kaquan_connectors(self) -> list[Any]:
        return [self.channel]


@dataclass
class ChannelShop:
    """A tenant with one channel account of the fake connector."""

    tenant_id: uuid.UUID
    account_id: uuid.UUID
    secret: str


async def connect_account(kernel: Any, tenant_id: uuid.UUID, name: str = "Test shop") -> ChannelShop:
    secret = "s3cret-" + uuid.uuid4().hex
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            account = ConnectorAccount(connector_id=CONNECTOR_ID, kind="sales_channel", name=name,
                                       config={"shop": name})
            db.add(account)
            await db.flush()
            account.secrets = seal_secrets(await kernel.keys.cipher(db), account.id, {"secret": secret})
            account_id = account.id
            db.add(AccountRoute(account_id=account_id, tenant_id=tenant_id))
    return ChannelShop(tenant_id, account_id, secret)


async def add_listing(kernel: Any, shop: ChannelShop, product_id: uuid.UUID, sku: str, quota: int, *,
                      price_fen: int = 1990, status: str = "active") -> uuid.UUID:
    with tenant_context(shop.tenant_id):
        async with kernel.db.transaction() as db:
            listing = Listing(account_id=shop.account_id, product_id=product_id, sku=sku, title=sku,
                              status=status, price_rule={"kind": "fixed", "price_fen": price_fen},
                              price_fen=price_fen, quota_kind="fixed", quota_value=quota, quota=quota,
                              split_rule={"channel_bp": 1000, "platform_bp": 200})
            db.add(listing)
            await db.flush()
            return listing.id


async def listing_quota(kernel: Any, tenant_id: uuid.UUID, listing_id: uuid.UUID) -> int:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return int(await db.scalar(select(Listing.quota).where(Listing.id == listing_id)) or 0)


def event_body(event: ChannelEvent) -> bytes:
    return msgspec.json.encode(event)


async def post_callback(client: Any, shop: ChannelShop, body: bytes, *, secret: str | None = None,
                        account: str | None = None) -> Any:
    headers = {SIGNATURE: sign(shop.secret if secret is None else secret, body),
               "Content-Type": "application/json"}
    return await client.post(f"/channels/{account or shop.account_id}/callback", content=body, headers=headers)


def reply_json(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.content)
    return data


async def run_jobs(app: Any, tenant_id: uuid.UUID, *, retries: int = 0, rounds: int = 6) -> list[BaseException]:
    """Run this tenant's pending channel-order jobs as the worker would (claimed from the outbox so the
    app's relay never runs them too); returns the errors the jobs raised (a retry the job system would do)."""
    env = app.state.jobs.env
    specs = load_job_modules()
    errors: list[BaseException] = []
    for _ in range(rounds):
        claimed: list[tuple[str, dict[str, Any], str]] = []
        with tenant_context(tenant_id):
            async with app.state.kernel.db.transaction() as db:
                rows = list((await db.execute(
                    select(OutboxMessage).where(OutboxMessage.actor.in_(ACTORS), OutboxMessage.status == "pending")
                    .order_by(OutboxMessage.id)
                )).scalars())
                for row in rows:
                    got = await db.execute(
                        update(OutboxMessage).where(OutboxMessage.id == row.id, OutboxMessage.status == "pending")
                        .values(status="done").returning(OutboxMessage.id)
                    )
                    if got.first() is not None:
                        claimed.append((row.actor, dict(row.payload), row.business_key))
        if not claimed:
            break
        for actor, payload, key in claimed:
            info = MessageInfo("m-" + uuid.uuid4().hex, actor, tenant_id, key, None, retries)
            tokens = set_job_context(env, info)
            try:
                with tenant_context(tenant_id):
                    await specs[actor].fn(**payload)
            except Exception as exc:  # a job that raises is retried by dramatiq; the test looks at it
                errors.append(exc)
            finally:
                reset_job_context(tokens)
    return errors
