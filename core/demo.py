"""``kaquan demo``: a demo operator and a demo tenant with an active owner and an API client, and (when the
built-in ``sandbox`` channel is installed) a sandbox shop whose first orders arrive and are fulfilled.

Re-running refreshes the passwords and the demo API client, so the printed logins always work.
"""

from __future__ import annotations

import msgspec
from sqlalchemy import select

from core.channel_orders.demo import seed_sandbox_sales
from core.db.context import tenant_context
from core.kernel import Kernel
from core.plugin_host import load_plugins
from core.settlement.demo import seed_settlement
from tenants.clients import create_client, list_clients, revoke_client
from tenants.models import Operator, User
from tenants.onboarding import create_tenant, ensure_default_plans
from tenants.registry import get_tenant_by_slug
from tenants.schemas import TenantCreate
from tenants.scopes import SCOPES
from tenants.security import generate_password, hash_password
from tenants.users import accept_invite

DEMO_OPERATOR = "operator@demo.example.com"
DEMO_SLUG = "demo"
DEMO_OWNER = "owner@demo.example.com"


class DemoInfo(msgspec.Struct):
    operator_email: str
    operator_password: str
    tenant_slug: str
    owner_email: str
    owner_password: str
    client_id: str
    client_secret: str
    channel_orders: int = 0
    channel_orders_fulfilled: int = 0
    #: ``2026-12: 4 of 4 lines matched, reconciled`` when the demo reconciled the sandbox shop's month.
    settlement: str = ""


async def create_demo(kernel: Kernel) -> DemoInfo:
    op_password, owner_password = generate_password(), generate_password()
    async with kernel.db.transaction() as db:
        await ensure_default_plans(db)
        op = (await db.execute(select(Operator).where(Operator.email == DEMO_OPERATOR))).scalar_one_or_none()
        if op is None:
            db.add(Operator(email=DEMO_OPERATOR, name="Demo operator", password_hash=hash_password(op_password)))
        else:
            op.password_hash, op.failed_logins, op.locked_until = hash_password(op_password), 0, None
        tenant = await get_tenant_by_slug(db, DEMO_SLUG)
        if tenant is None:
            created = await create_tenant(kernel, db, TenantCreate(
                name="演示商户 Demo Store", slug=DEMO_SLUG, owner_email=DEMO_OWNER, plan="growth"))
            tenant_id = created.tenant.id
            invite_token = created.owner_invite_url.rsplit("/", 1)[1]
        else:
            tenant_id, invite_token = tenant.id, None
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            if invite_token:
                await accept_invite(db, invite_token, owner_password, name="Demo owner")
            else:
                owner = (await db.execute(select(User).where(User.email == DEMO_OWNER))).scalar_one()
                owner.password_hash, owner.status = hash_password(owner_password), "active"
                owner.failed_logins, owner.locked_until = 0, None
            for c in await list_clients(db):
                if c.name == "demo" and c.revoked_at is None:
                    await revoke_client(db, c.id)
            client, secret = await create_client(db, "demo", sorted(SCOPES))
    plugins = load_plugins(kernel.settings.disabled_plugin_names)
    sales = await seed_sandbox_sales(kernel, plugins, tenant_id)
    settled = await seed_settlement(kernel, plugins, tenant_id, sales.account_id) if sales and sales.fulfilled else None
    return DemoInfo(DEMO_OPERATOR, op_password, DEMO_SLUG, DEMO_OWNER, owner_password, client.client_id, secret,
                    sales.orders if sales else 0, sales.fulfilled if sales else 0,
                    f"{settled.period}: {settled.matched} of {settled.lines} statement lines matched, {settled.status}"
                    if settled else "")
