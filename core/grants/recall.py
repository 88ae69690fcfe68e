"""Codes voided in the inventory (a recall): the units members hold on them become ``voided``.

The inventory's :func:`core.inventory.custody.void_codes` owns the codes; this module owns what that means
for grants, through the state machine of :mod:`core.grants.lifecycle` (item event ``void``, grant event
``recall``). It is called in two steps so that every path takes its locks in one order, grant rows
(sorted by id) before code rows, as a redemption, a rollback, a grant void and the expiry sweep do:

1. :func:`lock_holders` before the codes are locked;
2. :func:`void_held_items` after they were voided.

``core.grants`` imports the inventory (allocation, models), never the other way: the inventory finds
:data:`GRANT_HOLDERS` through its ``inventory.code_holders`` extension point (declared in
``core/grants/plugin.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.db.base import utcnow
from core.events.services import emit
from core.grants.lifecycle import GrantChange, LockedGrant, item_move, lock_grant, sync_grant
from core.grants.models import Grant, GrantItem

_HELD, _VOIDED = item_move("void")


async def _holders(session: AsyncSession, code_ids: Collection[uuid.UUID]) -> list[uuid.UUID]:
    return list(
        (
            await session.execute(
                select(GrantItem.grant_id)
                .where(GrantItem.code_id.in_(list(code_ids)), GrantItem.status == _HELD)
                .group_by(GrantItem.grant_id)
                .order_by(GrantItem.grant_id)
            )
        ).scalars()
    )


async def lock_holders(
    session: AsyncSession, code_ids: Collection[uuid.UUID], locked: dict[uuid.UUID, LockedGrant] | None = None
) -> dict[uuid.UUID, LockedGrant]:
    """Take the row lock of every grant with a held unit of ``code_ids`` (sorted by grant id, skipping
    those in ``locked``); returns all locked grants by id."""
    locked = dict(locked or {})
    for grant_id in await _holders(session, code_ids):
        if grant_id not in locked and (grant := await lock_grant(session, grant_id)) is not None:
            locked[grant_id] = grant
    return locked


async def void_held_items(
    session: AsyncSession,
    code_ids: Collection[uuid.UUID],
    reason: str,
    locked: dict[uuid.UUID, LockedGrant],
) -> list[GrantChange]:
    """Move every held unit of ``code_ids`` to ``voided`` and bring each grant's status in line (a grant
    whose units are all voided becomes ``voided``). Call it after the codes are locked and voided, with
    what :func:`lock_holders` returned; a grant that got a unit of these codes in between (allocated
    just before the codes were locked) is locked now. Audited per grant as ``grant.items_voided``; a grant
    that becomes ``voided`` records when and why and emits ``grant.voided`` as a grant void does."""
    locked = await lock_holders(session, code_ids, locked)
    changes: list[GrantChange] = []
    for grant_id in sorted(locked):
        grant = locked[grant_id]
        items = (
            await session.execute(
                update(GrantItem)
                .where(
                    GrantItem.grant_id == grant_id,
                    GrantItem.code_id.in_(list(code_ids)),
                    GrantItem.status == _HELD,
                )
                .values(status=_VOIDED)
                .returning(GrantItem.id, GrantItem.code_id),
                execution_options={"synchronize_session": False},
            )
        ).all()
        if not items:
            continue
        record(
            session,
            "grant.items_voided",
            "grant",
            grant_id,
            {"ref": grant.ref, "items": sorted(str(i) for i, _ in items), "reason": reason},
        )
        change = await sync_grant(session, grant_id, "void", locked=grant)
        if change is None:
            continue
        changes.append(change)
        if change.new == "voided":
            await session.execute(
                update(Grant)
                .where(Grant.id == grant_id)
                .values(voided_at=utcnow(), void_reason=reason[:500]),
                execution_options={"synchronize_session": False},
            )
            facts = {
                "ref": grant.ref,
                "reason": reason[:500],
                "codes": sorted({str(c) for _, c in items}),
                "cause": "codes_voided",
            }
            emit(session, "grant.voided", grant_id, facts)
    return changes


class GrantHolders:
    """The grants' side of a void in the inventory (the ``inventory.code_holders`` extension point)."""

    async def lock(self, session: AsyncSession, code_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, LockedGrant]:
        """:func:`lock_holders`."""
        return await lock_holders(session, code_ids)

    async def release(
        self,
        session: AsyncSession,
        code_ids: Collection[uuid.UUID],
        reason: str,
        locked: dict[uuid.UUID, LockedGrant],
    ) -> None:
        """:func:`void_held_items`."""
        await void_held_items(session, code_ids, reason, locked)


GRANT_HOLDERS = GrantHolders()
