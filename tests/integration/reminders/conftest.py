"""Fixtures and helpers for expiry-reminder tests: the job harness (recording notifier) from the jobs tests,
the console browser from the console tests, and members holding codes that expire soon."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from core.db.base import utcnow
from core.db.context import tenant_context
from core.grants.models import GrantItem
from core.grants.schemas import GrantRequest
from core.grants.services import create_grant
from core.reminders.services import ReminderRun, run_reminders
from tests.integration.console.conftest import browser, make_user, new_browser
from tests.integration.inventory.stocking import stock_product
from tests.integration.jobs.conftest import jobs, plugin_host, recorder

__all__ = ["browser", "jobs", "make_user", "new_browser", "plugin_host", "recorder"]

DAY = dt.timedelta(days=1)


@dataclass
class Holding:
    member_id: uuid.UUID
    item_ids: list[uuid.UUID]


def phone() -> str:
    return f"13{secrets.randbelow(10)}{secrets.randbelow(10**8):08d}"


async def hold(
    kernel: Any, tenant_id: uuid.UUID, expires_in: dt.timedelta, quantity: int = 1, **contact: str
) -> Holding:
    """Grant ``quantity`` codes that expire ``expires_in`` from now to a member (no delivery)."""
    when = utcnow() + expires_in
    stocked = await stock_product(kernel, tenant_id, quantity, expiries=[when] * quantity, with_pin=False)
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            request = GrantRequest(
                product_id=stocked.product_id, quantity=quantity, channel="none", **contact
            )
            grant = await create_grant(db, kernel, request, source="api")
            items = list(
                (await db.execute(select(GrantItem.id).where(GrantItem.grant_id == grant.id))).scalars()
            )
            return Holding(grant.member_id, items)  # type: ignore[arg-type]


async def run(kernel: Any, tenant_id: uuid.UUID) -> ReminderRun:
    with tenant_context(tenant_id):
        return await run_reminders(kernel.db)
