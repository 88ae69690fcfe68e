"""What redemption tells the grants about their items (the ``grants.item_used`` extension point)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, exists

from core.redemption.models import Redemption


def item_used(item: Any) -> ColumnElement[bool]:
    """Whether the grant item ``item`` (the mapped class, correlated) has an active redemption."""
    return (
        exists()
        .where(
            and_(
                Redemption.tenant_id == item.tenant_id,
                Redemption.code_id == item.code_id,
                Redemption.grant_item_id == item.id,
                Redemption.status == "redeemed",
            )
        )
        .correlate(item)
    )
