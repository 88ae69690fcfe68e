"""The state machine of grants and grant items, defined once: every status change goes through here.

A **grant item** is one unit handed to a member::

    held ──redeem──▶ redeemed ──rollback──▶ held
    held ──void────▶ voided        (the grant was voided and the code went back to stock, or the
                                    shop voided the code in the inventory: a recall)
    held ──expire──▶ expired       (its validity ended unredeemed; the expiry sweep)
    held ──transfer▶ transferred   (given to another member, who holds a new item)

A stored-value card's item stays ``held`` while it has a balance (it is still usable) and becomes
``redeemed`` when the balance reaches 0; a reusable code gives up one item per use.

A **grant** follows its delivery and then its units::

    created ─┬─deliver──────▶ delivered
             ├─delivery_fail▶ delivery_failed ──deliver──▶ delivered
             └─void─────────▶ voided            (also from delivery_failed)
    created / delivered / delivery_failed ──use──▶ partially_redeemed / redeemed
    partially_redeemed ──use──▶ redeemed
    partially_redeemed / redeemed ──rollback──▶ partially_redeemed / back to its delivery status
                                                / voided (the code was voided in the inventory since)
    created / delivered / delivery_failed ──expire──▶ expired   (every unit expired unused)
    created / delivered / delivery_failed ──recall──▶ voided    (the shop voided every unit's code in the
                                                                inventory; ``expired`` if some expired)

``redeemed``: every unit it still has (transferred-away units do not count) is redeemed.
``partially_redeemed``: some are used (redeemed, or a stored-value card partly spent), not all.
Units voided or expired after others were used leave the grant ``partially_redeemed``; a grant with
nothing used and nothing held is ``expired`` if any unit expired, else ``voided`` (all recalled).
A grant never delivered through a channel (``channel`` none) goes from ``created`` straight to
``partially_redeemed`` / ``redeemed``. A delivery that lands after a redemption records ``delivered_at``
and keeps the redemption status.

After an item changes, :func:`sync_grant` derives the grant's status from its items (under the grant's
row lock) and applies it only if :data:`GRANT_TRANSITIONS` allows the move. Explicit moves (void,
delivery) are checked against the same table. A move the table does not allow raises
:class:`IllegalTransition` (``409 illegal_transition``) and nothing changes. The statuses themselves are
declared in :mod:`core.grants.models`, beside the CHECK constraints that hold the database to them.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import false, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.domains import extensions
from core.errors import Conflict
from core.grants.models import GRANT_STATUSES, Grant, GrantItem
from core.grants.models import ITEM_STATUSES as ITEM_STATUSES  # the statuses ITEM_TRANSITIONS moves between

#: (item status, event) → the item's next status. Anything else is illegal.
ITEM_TRANSITIONS: dict[tuple[str, str], str] = {
    ("held", "redeem"): "redeemed",
    ("redeemed", "rollback"): "held",
    ("held", "void"): "voided",
    ("held", "expire"): "expired",
    ("held", "transfer"): "transferred",
}

_DELIVERY = frozenset({"created", "delivered", "delivery_failed"})
_USED = frozenset({"partially_redeemed", "redeemed"})
#: Where a recall (codes voided in the inventory) leaves a grant none of whose units is held or used.
_ENDED = frozenset({"voided", "expired"})

#: grant status → event → the statuses it may move to. Anything else is illegal.
GRANT_TRANSITIONS: dict[str, dict[str, frozenset[str]]] = {
    "created": {
        "deliver": frozenset({"delivered"}),
        "delivery_fail": frozenset({"delivery_failed"}),
        "void": frozenset({"voided"}),
        "use": _USED,
        "expire": frozenset({"expired"}),
        "recall": _ENDED,
    },
    "delivery_failed": {
        "deliver": frozenset({"delivered"}),
        "void": frozenset({"voided"}),
        "use": _USED,
        "expire": frozenset({"expired"}),
        "recall": _ENDED,
    },
    "delivered": {"use": _USED, "expire": frozenset({"expired"}), "recall": _ENDED},
    # a rollback can end a grant whose other units expired or were recalled meanwhile (a stored-value card
    # partly spent, then expired: undoing the spend leaves nothing used and nothing held)
    "partially_redeemed": {
        "use": frozenset({"redeemed"}),
        "rollback": _DELIVERY | {"partially_redeemed"} | _ENDED,
    },
    "redeemed": {"rollback": _DELIVERY | {"partially_redeemed"} | _ENDED},
    "expired": {},
    "voided": {},
}

#: The events that move grant items, and the grant event each one amounts to.
_GRANT_EVENT_OF_ITEM_EVENT = {
    "redeem": "use",
    "rollback": "rollback",
    "expire": "expire",
    "transfer": "transfer",
    "void": "recall",  # through sync_grant only from a recall; void_grant moves its grant explicitly
}


class IllegalTransition(Conflict):
    """A status change the state machine does not allow (nothing was changed)."""

    code = "illegal_transition"


def _illegal(kind: str, status: str, event: str) -> IllegalTransition:
    return IllegalTransition(
        f"A {status} {kind} cannot be {event}",
        f"状态为 {status} 的{'发放' if kind == 'grant' else '发放明细'}不能执行 {event}",
        extra={"status": status, "event": event},
    )


def item_transition(status: str, event: str) -> str:
    """The item's next status after ``event``; :class:`IllegalTransition` when the table has no such move."""
    target = ITEM_TRANSITIONS.get((status, event))
    if target is None:
        raise _illegal("grant item", status, event)
    return target


def item_move(event: str) -> tuple[str, str]:
    """(from, to) of an item event that has one source status (for conditional ``UPDATE … WHERE status``)."""
    moves = [(old, new) for (old, ev), new in ITEM_TRANSITIONS.items() if ev == event]
    if len(moves) != 1:
        raise ValueError(f"item event {event!r} has {len(moves)} source statuses")
    return moves[0]


def grant_can(status: str, event: str, target: str | None = None) -> bool:
    """Whether a grant in ``status`` may take ``event`` (to ``target``, when given)."""
    targets = GRANT_TRANSITIONS.get(status, {}).get(event)
    if not targets:
        return False
    return target is None or target in targets


def grant_sources(event: str) -> tuple[str, ...]:
    """The grant statuses ``event`` may start from (for conditional updates)."""
    return tuple(s for s in GRANT_STATUSES if event in GRANT_TRANSITIONS.get(s, {}))


def check_grant(status: str, event: str, target: str) -> None:
    """Raise :class:`IllegalTransition` unless a grant may move from ``status`` to ``target`` by ``event``."""
    if not grant_can(status, event, target):
        raise _illegal("grant", status, event)


def awaiting_delivery(status: str, channel: str | None, delivered_at: object) -> bool:
    """Whether a grant's codes should still be sent: it has a channel, was never delivered, and is not
    voided, expired or wholly redeemed (a partly redeemed grant still has units the member needs)."""
    return channel is not None and delivered_at is None and status in ("created", "partially_redeemed")


def delivery_status(channel: str | None, delivered: bool, delivery_failed: bool) -> str:
    """Where a grant stands on delivery alone: ``delivered``, ``delivery_failed`` or ``created``."""
    if delivered:
        return "delivered"
    if channel is not None and delivery_failed:
        return "delivery_failed"
    return "created"


def derive_grant_status(current: str, delivery: str, items: Counter[str], partly_used: int) -> str:
    """The status a grant's units say it has (``items``: item statuses counted; ``partly_used``: items not
    redeemed but with an active redemption, i.e. stored-value cards partly spent)."""
    if current == "voided":
        return current
    held, redeemed = items["held"], items["redeemed"]
    live = sum(n for s, n in items.items() if s != "transferred")
    if live and redeemed == live:
        return "redeemed"
    if redeemed or partly_used:
        return "partially_redeemed"
    if not held and items["expired"]:
        return "expired"
    if not held and items["voided"]:
        return "voided"
    return delivery


@dataclass(frozen=True)
class GrantChange:
    grant_id: uuid.UUID
    old: str
    new: str


@dataclass(frozen=True)
class LockedGrant:
    """What :func:`sync_grant` needs of a grant, read under its row lock."""

    id: uuid.UUID
    status: str
    ref: str
    channel: str | None
    delivered: bool
    delivery_failed: bool


async def lock_grant(session: AsyncSession, grant_id: uuid.UUID) -> LockedGrant | None:
    """Take the grant's row lock (PostgreSQL) and read it. Every path that changes a grant's items takes
    this lock first (redemption, rollback, void, expiry), so two of them never wait on each other in a
    circle, and concurrent redemptions of two units of one grant count each other's items."""
    row = (
        await session.execute(
            select(Grant.status, Grant.ref, Grant.channel, Grant.delivered_at, Grant.delivery_detail)
            .where(Grant.id == grant_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        return None
    return LockedGrant(
        grant_id, row.status, row.ref, row.channel, row.delivered_at is not None, row.delivery_detail is not None
    )


#: The extension point that tells whether a held item was partly used (a stored-value card partly spent):
#: each provider gives ``clause(GrantItem)``, a boolean SQL expression correlated to the item's row.
ITEM_USED = "grants.item_used"


async def sync_grant(
    session: AsyncSession, grant_id: uuid.UUID, cause: str, *, locked: LockedGrant | None = None
) -> GrantChange | None:
    """Bring the grant's status in line with its items after an item ``cause`` event (redeem, rollback,
    expire, transfer, void); returns the change, or None when the status stays.

    ``locked`` is the grant as :func:`lock_grant` read it earlier in this transaction (else it is locked
    and read now). Audited as ``grant.status_changed``; a move the table does not allow raises.
    """
    grant = locked if locked is not None and locked.id == grant_id else await lock_grant(session, grant_id)
    if grant is None:
        return None
    clauses = [clause(GrantItem) for clause in extensions(ITEM_USED)]
    spent = or_(*clauses) if clauses else false()
    counts: Counter[str] = Counter()
    partly_used = 0
    for status, n, used in (
        await session.execute(
            select(GrantItem.status, func.count(), func.count().filter(spent))
            .where(GrantItem.grant_id == grant_id)
            .group_by(GrantItem.status)
        )
    ).all():
        counts[status] = int(n)
        if status not in ("redeemed", "transferred"):
            partly_used += int(used or 0)
    delivery = delivery_status(grant.channel, grant.delivered, grant.delivery_failed)
    new = derive_grant_status(grant.status, delivery, counts, partly_used)
    if new == grant.status:
        return None
    check_grant(grant.status, _GRANT_EVENT_OF_ITEM_EVENT.get(cause, cause), new)
    await session.execute(
        update(Grant).where(Grant.id == grant_id, Grant.status == grant.status).values(status=new),
        execution_options={"synchronize_session": False},
    )
    record(session, "grant.status_changed", "grant", grant_id,
           {"ref": grant.ref, "from": grant.status, "to": new, "cause": cause})
    return GrantChange(grant_id, grant.status, new)


async def grant_of_item(session: AsyncSession, item_id: uuid.UUID) -> uuid.UUID | None:
    """The grant an item belongs to."""
    return await session.scalar(select(GrantItem.grant_id).where(GrantItem.id == item_id))
