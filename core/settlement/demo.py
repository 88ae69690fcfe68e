"""Settlement in the demo tenant: the channel kind's split rule, the sandbox shop's statement fetched
through its connector and this month reconciled, so a new user opens 结算对账 and sees every part working.

Everything goes through the services a tenant uses (rules, statement fetch, reconciliation). Running the
demo again adds nothing: the rule exists, the statement's lines are stored once, and reconciliation is
run only when the period has no run yet.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from core.db.base import utcnow
from core.db.context import tenant_context
from core.errors import DomainError
from core.plugin_host import PluginHost
from core.settlement.models import RECON_CLASSES, ReconRun, Settlement
from core.settlement.reconcile import reconcile
from core.settlement.statements import fetch_statement
from core.splits.ledger import period_of, tenant_zone
from core.splits.models import SplitRule
from core.splits.rules import create_version
from core.splits.terms import SplitComponent, SplitTerms

BY = "kaquan demo"


@dataclass(frozen=True)
class SettlementDemo:
    """What the demo reconciled: the period, its statement lines matched of all, the settlement's status."""

    period: str
    matched: int
    lines: int
    status: str


async def seed_settlement(
    kernel: Any, plugins: PluginHost, tenant_id: uuid.UUID, account_id: uuid.UUID
) -> SettlementDemo | None:
    """Set the demo's split rule, fetch the shop's statement and reconcile this month (``None`` when it ran
    before or the shop cannot give a statement)."""
    now = utcnow()
    subject = f"connector:{kernel.settings.demo_channel}"
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            if await db.scalar(select(SplitRule.id).where(SplitRule.subject == subject)) is None:
                terms = SplitTerms(components=[SplitComponent(party="channel", basis="sale", bp=1000, label="渠道佣金")])
                await create_version(db, subject, terms, valid_from=now - dt.timedelta(days=1),
                                     note="演示：渠道抽佣 10%", by=BY)
            period = period_of(now, await tenant_zone(db))
            if await db.scalar(select(ReconRun.id).where(ReconRun.account_id == account_id,
                                                         ReconRun.period == period)) is not None:
                return None
        try:
            async with kernel.db.transaction() as db:
                await fetch_statement(db, kernel.db, await kernel.keys.cipher(db), plugins, account_id,
                                      now - dt.timedelta(days=1), now + dt.timedelta(minutes=5), by=BY,
                                      embedded=not kernel.settings.redis_url)
        except DomainError:  # a demo channel without statements: the pages stay empty, the demo goes on
            return None
        async with kernel.db.transaction() as db:
            run = await reconcile(db, account_id, period, BY)
            status = await db.scalar(select(Settlement.status).where(Settlement.account_id == account_id,
                                                                      Settlement.period == period))
            counts = {k: int(run.counts.get(k, 0)) for k in RECON_CLASSES}
            return SettlementDemo(period, counts["matched"], sum(counts.values()), str(status or "open"))
