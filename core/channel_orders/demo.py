"""Consignment in the demo tenant: a product listed on a ``sandbox`` channel account (the built-in simulated
shop, when installed), its stock pushed to the shop, and the shop's first orders pulled, fulfilled and
delivered, so that a new user opens the console and sees channel orders and sales.

Everything goes through the same paths as production: the account is called through
:func:`core.connectors.calls.bind_account`, the shop's orders arrive by polling (the sandbox places orders
at each pull when ``orders_per_pull`` is set), are stored once, fulfilled from the listing's quota and
delivered by the delivery job. Running the demo again adds nothing (the account exists).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from core.catalog.models import Product
from core.channel_orders.delivery import deliver_channel_order
from core.channel_orders.models import ChannelMessage, ChannelOrder
from core.channel_orders.polling import poll_account
from core.channel_orders.processing import process_message
from core.channels.schemas import ListingIn, PriceRule, QuotaIn
from core.channels.services import create_listing
from core.connectors.calls import ConnectorCallFailed, bind_account
from core.connectors.models import ConnectorAccount
from core.connectors.schemas import AccountConnect
from core.connectors.services import ConnectorNotAllowed, connect
from core.db.context import tenant_context
from core.db.ids import readable_ref
from core.errors import ValidationFailed
from core.inventory.models import Batch, Code
from core.inventory.vault import seal
from core.jobs.context import JobEnv, reset_job_context, set_job_context
from core.plugin_host import PluginHost
from plugins import StockItem, StockPush, StockPushResult

ACCOUNT_NAME = "沙盒店铺 Sandbox shop"
SKU = "SBX-VIP-MONTH"


@dataclass(frozen=True)
class SandboxDemo:
    """What the demo set up: the account, and how many orders arrived and were fulfilled."""

    account_id: uuid.UUID
    orders: int
    fulfilled: int


async def _stock(db: Any, kernel: Any, count: int) -> uuid.UUID:
    product = Product(sku="DEMO-VIP-MONTH", kind="code", code_format="number_pin", name_zh="视频会员月卡（演示）",
                      name_en="Video membership, one month (demo)", face_value=2500)
    db.add(product)
    await db.flush()
    batch = Batch(ref=readable_ref("B"), product_id=product.id, supplier="演示供应商 Demo supplier", unit_cost=1500,
                  code_count=count)
    db.add(batch)
    await db.flush()
    cipher = await kernel.keys.cipher(db)
    for _ in range(count):
        sealed = seal(cipher, f"VIP{secrets.token_hex(6).upper()}", f"{secrets.randbelow(10**6):06d}")
        db.add(Code(product_id=product.id, batch_id=batch.id, digest=sealed.digest, secret=sealed.secret,
                    last4=sealed.last4, has_pin=True))
    return product.id


async def _setup(kernel: Any, plugins: PluginHost, tenant_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The sandbox account and its listing, made through the services a tenant uses (``None`` when the demo
    ran before)."""
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            if await db.scalar(select(ConnectorAccount.id).where(ConnectorAccount.name == ACCOUNT_NAME)):
                return None
            product_id = await _stock(db, kernel, 30)
            config = {"shop_name": ACCOUNT_NAME, "orders_per_pull": 4, "max_quantity": 2, "refund_percent": 0,
                      "redeem_percent": 0, "signing_secret": secrets.token_urlsafe(24)}
            try:
                account = await connect(db, await kernel.keys.cipher(db), plugins,
                                        AccountConnect(connector_id=kernel.settings.demo_channel, name=ACCOUNT_NAME,
                                                       config=config))
            except (ConnectorNotAllowed, ValidationFailed):  # an older plan; a demo channel unlike the sandbox
                await db.rollback()
                return None
            listing = await create_listing(db, ListingIn(
                account_id=account.id, product_id=product_id, sku=SKU, title="视频会员月卡",
                price_rule=PriceRule(kind="fixed", price_fen=1990), quota=QuotaIn(kind="fixed", value=12),
                split_rule={"channel_bp": 1000, "platform_bp": 0}))
            return account.id, listing.id


async def _settle(kernel: Any, env: JobEnv, tenant_id: uuid.UUID) -> None:
    """Process the stored messages and deliver the allocated orders, as the worker would."""
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            ids = list((await db.execute(select(ChannelMessage.id).where(ChannelMessage.status == "pending")
                                         .order_by(ChannelMessage.id))).scalars())
        for mid in ids:
            async with kernel.db.transaction() as db:
                await process_message(db, kernel, mid)
        async with kernel.db.transaction() as db:
            orders = list((await db.execute(select(ChannelOrder.id).where(ChannelOrder.status == "received"))).scalars())
        tokens = set_job_context(env, None)
        try:
            for oid in orders:
                await deliver_channel_order(str(oid))
        finally:
            reset_job_context(tokens)


async def seed_sandbox_sales(kernel: Any, plugins: PluginHost, tenant_id: uuid.UUID) -> SandboxDemo | None:
    """Set the demo tenant's sandbox shop up and let its first orders arrive; ``None`` when the sandbox
    connector is not installed or the demo ran before."""
    if kernel.settings.demo_channel not in plugins.connectors():
        return None
    made = await _setup(kernel, plugins, tenant_id)
    if made is None:
        return None
    account_id, listing_id = made
    env = JobEnv(kernel.settings, kernel.keys, plugins)
    try:
        with tenant_context(tenant_id):
            async with kernel.db.transaction() as db:
                bound = await bind_account(db, await kernel.keys.cipher(db), plugins, account_id, db=kernel.db)
            item = StockItem(sku=SKU, listing_id=str(listing_id), available=12, price_fen=1990, version=1)
            try:
                await bound.call("push_stock", StockPush(reference=f"demo:{listing_id}", items=[item]),
                                 expect=StockPushResult)
            except ConnectorCallFailed:
                return SandboxDemo(account_id, 0, 0)
            await poll_account(env, account_id, max_pages=2)
        await _settle(kernel, env, tenant_id)
        with tenant_context(tenant_id):
            async with kernel.db.transaction() as db:
                statuses = list((await db.execute(select(ChannelOrder.status))).scalars())
    finally:
        await env.db().dispose()
    return SandboxDemo(account_id, len(statuses), statuses.count("fulfilled"))
