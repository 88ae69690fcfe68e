"""An event and its webhook fan-out row written inside a hot path's own statement (PostgreSQL).

:func:`core.events.services.emit` adds the event to the session; the flush inserts it and then the fan-out
row in a statement of its own. A hot path that already sends one data-modifying statement for its change can
carry its event in that statement instead: :func:`event_after` is ``INSERT INTO events … SELECT … FROM
<source>`` (one event per row of ``source``, a data-modifying CTE of the same statement, so no event when the
change did not happen), with the fan-out row attached as a CTE under emit's rule (written only when the
tenant has an active webhook subscription). Data-modifying CTEs are PostgreSQL's; elsewhere use ``emit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import BindParameter, Insert, bindparam, exists, insert, literal, select
from sqlalchemy.sql.expression import CTE

from core.db.ids import new_id
from core.events.models import Event, WebhookSubscription
from core.events.services import EVENT_TYPES, FANOUT_ACTOR
from core.jobs.models import OutboxMessage

_EVENTS = Event.__table__
_OUTBOX = OutboxMessage.__table__
_SUBS = WebhookSubscription.__table__


def event_after(
    source: CTE, tenant: BindParameter[Any], now: BindParameter[Any], *, ctes: Sequence[CTE] = ()
) -> Insert:
    """The event insert (``RETURNING events.id``) made of ``source``'s rows, its fan-out row as a CTE.

    ``ctes`` are the caller's CTEs in the order they refer to each other (``source`` among them), placed
    before the fan-out's. ``tenant`` and ``now`` are the caller's parameters (one tenant for every row of
    the statement; the engine checks it as the INSERT's tenant); the event's own are :func:`event_params`.
    """
    e, o = _EVENTS.c, _OUTBOX.c
    fan_rows = (
        select(
            tenant,
            bindparam("ev_fan_id", type_=o.id.type),
            literal(FANOUT_ACTOR, o.actor.type),
            bindparam("ev_fan_payload", type_=o.payload.type),
            bindparam("ev_fan_key", type_=o.business_key.type),
            literal("pending", o.status.type),
            literal(0, o.attempts.type),
            now,
            now,
        )
        .select_from(source)
        .where(exists().where(_SUBS.c.tenant_id == tenant, _SUBS.c.active.is_(True)))
    )
    fan_columns = ["tenant_id", "id", "actor", "payload", "business_key", "status", "attempts"]
    fan = insert(_OUTBOX).from_select([*fan_columns, "available_at", "created_at"], fan_rows).cte("fan_out")
    event_rows = select(
        tenant,
        bindparam("ev_id", type_=e.id.type),
        bindparam("ev_type", type_=e.type.type),
        bindparam("ev_data", type_=e.data.type),
        bindparam("ev_object_id", type_=e.object_id.type),
        now,
    ).select_from(source)
    columns = ["tenant_id", "id", "type", "data", "object_id", "created_at"]
    return insert(_EVENTS).from_select(columns, event_rows).add_cte(*ctes, fan).returning(e.id)


def event_params(type_: str, object_id: object, data: dict[str, Any]) -> dict[str, Any]:
    """The parameters of :func:`event_after`'s event of type ``type_`` (checked as ``emit`` checks it)."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    event_id = new_id()
    return {
        "ev_id": event_id,
        "ev_type": type_,
        "ev_data": msgspec.to_builtins(data),
        "ev_object_id": str(object_id),
        "ev_fan_id": new_id(),
        "ev_fan_payload": {"event_id": str(event_id)},
        "ev_fan_key": f"webhooks:{event_id}",
    }
