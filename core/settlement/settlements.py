"""Settlements per channel account and period: their status, and what reconciliation tells them."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.db.base import utcnow
from core.events.services import emit
from core.settlement.models import Settlement

__all__ = ["mark_reconciled", "settlement_row"]


async def settlement_row(session: AsyncSession, account_id: uuid.UUID, period: str, *, lock: bool = False) -> Settlement:
    """The settlement of an account's period, created ``open`` the first time it is asked for."""
    query = select(Settlement).where(Settlement.account_id == account_id, Settlement.period == period)
    found = (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()
    if found is None:
        async with session.begin_nested():
            session.add(Settlement(account_id=account_id, period=period, status="open", updated_at=utcnow()))
        found = (await session.execute(query.with_for_update() if lock else query)).scalar_one()
    return found


async def mark_reconciled(
    session: AsyncSession, account_id: uuid.UUID, period: str, run_id: uuid.UUID, open_items: int
) -> Settlement:
    """Tell the period's settlement what its latest reconciliation run found.

    With no open item an ``open`` settlement becomes ``reconciled`` and ``settlement.ready`` is raised; with
    open items a ``reconciled`` one goes back to ``open``. A ``confirmed`` or ``paid`` settlement is locked
    and keeps its status (later differences belong to the next period).
    """
    s = await settlement_row(session, account_id, period, lock=True)
    s.last_run_id = run_id
    now = utcnow()
    if s.status in ("confirmed", "paid"):
        return s
    facts = {"account_id": str(account_id), "period": period, "run_id": str(run_id), "open_items": open_items}
    if open_items == 0 and s.status == "open":
        s.status, s.reconciled_at, s.updated_at = "reconciled", now, now
        record(session, "settlement.reconciled", "settlement", s.id, facts)
        emit(session, "settlement.ready", s.id, facts)
    elif open_items > 0 and s.status == "reconciled":
        s.status, s.reconciled_at, s.updated_at = "open", None, now
        record(session, "settlement.reopened", "settlement", s.id, facts)
    await session.flush()
    return s
