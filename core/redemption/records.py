"""Redemption records: reading them, the API's view of one, the facts its audit record and event carry,
and the tenant's rollback window (the one redemption setting).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.db.base import utcnow
from core.db.paging import keyset_page
from core.errors import FieldError, NotFound, ValidationFailed
from core.inventory.vault import masked
from core.redemption.models import DEFAULT_ROLLBACK_WINDOW_MINUTES, Redemption, RedemptionSettings
from core.redemption.schemas import RedemptionOut, RedemptionPage


async def get_settings(session: AsyncSession) -> RedemptionSettings:
    """The tenant's redemption settings (defaults when never changed; not stored until changed)."""
    row = (await session.execute(select(RedemptionSettings))).scalar_one_or_none()
    return row or RedemptionSettings(rollback_window_minutes=DEFAULT_ROLLBACK_WINDOW_MINUTES)


async def update_settings(session: AsyncSession, rollback_window_minutes: int) -> RedemptionSettings:
    """Set the rollback window (minutes), audited as ``redemption.settings_changed`` with before and after."""
    row = (await session.execute(select(RedemptionSettings).with_for_update())).scalar_one_or_none()
    before = row.rollback_window_minutes if row else DEFAULT_ROLLBACK_WINDOW_MINUTES
    if row is None:
        row = RedemptionSettings(rollback_window_minutes=rollback_window_minutes)
        session.add(row)
    row.rollback_window_minutes = rollback_window_minutes
    row.updated_at = utcnow()
    await session.flush()
    record(
        session,
        "redemption.settings_changed",
        "redemption_settings",
        row.id,
        {"rollback_window_minutes": {"from": before, "to": rollback_window_minutes}},
    )
    return row


async def find_redemption(session: AsyncSession, redemption_id: uuid.UUID) -> Redemption:
    """The redemption, read fresh; ``404 redemption_not_found``."""
    red = (
        await session.execute(
            select(Redemption).where(Redemption.id == redemption_id).execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if red is None:
        raise NotFound("Redemption not found", "核销记录不存在", code="redemption_not_found")
    return red


def redemption_out(red: Redemption, window_minutes: int) -> RedemptionOut:
    """The redemption as the API shows it, with the deadline of its rollback window."""
    return RedemptionOut(
        red.id,
        red.code_id,
        masked(red.code_last4),
        red.product_id,
        red.kind,
        red.status,
        red.store,
        red.terminal,
        red.reference,
        red.amount,
        red.currency,
        red.balance_after,
        red.use_number,
        red.member_id,
        red.grant_item_id,
        red.user_id,
        red.client_id,
        red.created_at,
        red.created_at + dt.timedelta(minutes=window_minutes),
        red.rolled_back_at,
        red.rollback_reason,
        red.store_id,
    )


async def list_redemptions(
    session: AsyncSession,
    *,
    last4: str | None = None,
    store: str | None = None,
    terminal: str | None = None,
    since: dt.datetime | None = None,
    status: str | None = None,
    store_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    cursor: uuid.UUID | None = None,
    limit: int = 50,
) -> RedemptionPage:
    """Redemptions newest first, filtered by the code's last four characters, store (text or record),
    terminal, time, status, and the console user who redeemed."""
    q = select(Redemption)
    if last4:
        q = q.where(Redemption.code_last4 == last4.strip()[-4:])
    if store:
        q = q.where(Redemption.store == store.strip())
    if terminal:
        q = q.where(Redemption.terminal == terminal.strip())
    if store_id is not None:
        q = q.where(Redemption.store_id == store_id)
    if user_id is not None:
        q = q.where(Redemption.user_id == user_id)
    if since is not None:
        if since.tzinfo is None:
            raise ValidationFailed(
                "since needs a time zone (e.g. 2026-01-01T00:00:00+08:00)",
                "since 需要带时区（例如 2026-01-01T00:00:00+08:00）",
                errors=[FieldError(field="since", message="timezone required")],
            )
        q = q.where(Redemption.created_at >= since)
    if status:
        q = q.where(Redemption.status == status)
    page = await keyset_page(session, q, Redemption.id, cursor=cursor, limit=limit)
    window = (await get_settings(session)).rollback_window_minutes
    return RedemptionPage([redemption_out(r, window) for r in page.items], page.next_cursor)


def redemption_facts(red: Redemption) -> dict[str, Any]:
    """What the audit record and the event say about a redemption (never the code itself)."""
    return {
        "redemption_id": str(red.id),
        "code_id": str(red.code_id),
        "last4": red.code_last4,
        "product_id": str(red.product_id),
        "kind": red.kind,
        "store": red.store,
        "store_id": str(red.store_id) if red.store_id else None,
        "terminal": red.terminal,
        "reference": red.reference,
        "amount": red.amount,
        "currency": red.currency,
        "balance_after": red.balance_after,
        "use_number": red.use_number,
        "member_id": str(red.member_id) if red.member_id else None,
        "grant_item_id": str(red.grant_item_id) if red.grant_item_id else None,
    }
