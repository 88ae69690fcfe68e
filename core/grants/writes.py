"""Writing new grants with pre-built Core statements (the ORM flush of a grant cost more than its SQL).

A grant is written as its row, one ``held`` item per code, its ``grant.created`` event with the event's
webhook fan-out row (written only when the tenant has an active subscription, as
:func:`core.events.services.emit` does) and, when it is to be delivered, its delivery outbox row.

On PostgreSQL a single grant is one statement: the grant's ``INSERT`` with the others as data-modifying
CTEs (the items from ``unnest`` of three arrays, so one statement serves any quantity). Foreign keys are
checked at the end of the statement, so the items may reference the grant inserted beside them. Elsewhere
(SQLite, or a batch of grants) each table gets one batched ``INSERT``. The statements are built once.

The audit event stays with :func:`core.audit.services.record` (the caller records it). The ``Grant``
objects are attached to the session as persistent afterwards, so the caller's session knows them without
inserting them again; the items are kept as plain :class:`NewItem` values for the answer.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Insert, bindparam, column, exists, func, insert, literal, select, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from core.db.context import require_tenant
from core.db.ids import new_id
from core.events.models import Event, WebhookSubscription
from core.events.services import EVENT_TYPES, FANOUT_ACTOR
from core.grants.models import Grant, GrantItem
from core.jobs.models import OutboxMessage

__all__ = ["CREATED_EVENT", "NewGrant", "NewItem", "write_grants"]

CREATED_EVENT = "grant.created"
if CREATED_EVENT not in EVENT_TYPES:  # emit() checks each type it writes; these rows bypass emit()
    raise RuntimeError(f"{CREATED_EVENT!r} is declared by no domain (core/grants/plugin.py)")

_GRANTS = Grant.__table__
_ITEMS = GrantItem.__table__
_EVENTS = Event.__table__
_OUTBOX = OutboxMessage.__table__
_SUBSCRIPTIONS = WebhookSubscription.__table__
_GRANT_COLUMNS = tuple(c.key for c in _GRANTS.c)
_ITEM_COLUMNS = ("tenant_id", "id", "grant_id", "code_id", "member_id", "status", "expires_at", "created_at")
_OUTBOX_COLUMNS = ("tenant_id", "id", "actor", "payload", "business_key", "status", "attempts")


@dataclass(frozen=True, slots=True)
class NewItem:
    """A unit of a grant just written (what the answer shows of it)."""

    id: uuid.UUID
    code_id: uuid.UUID
    status: str
    expires_at: dt.datetime | None


@dataclass(slots=True)
class NewGrant:
    """A grant to write: its object (every column set but ``tenant_id`` and ``created_at``), its units, the
    facts of its ``grant.created`` event, and the actor that delivers it (None: no delivery)."""

    grant: Grant
    items: list[NewItem]
    facts: dict[str, Any]
    delivery_actor: str | None


def _param(name: str, table_column: Any) -> Any:
    return bindparam(name, type_=table_column.type)


def _outbox_rows(actor: Any, payload: Any, key: Any, now: Any, tenant: Any, id_: Any) -> Any:
    """The SELECT list of an outbox row (pending, no attempts, available now)."""
    return select(tenant, id_, actor, payload, key, literal("pending"), literal(0), now, now)


@functools.lru_cache(maxsize=1)
def _statements() -> dict[str, Any]:
    """The per-table statements (batched ``executemany``); PostgreSQL's single grant reuses their parts."""
    tenant = _param("tenant_id", _GRANTS.c.tenant_id)
    now = _param("now", _GRANTS.c.created_at)
    grant_values = {c: _param(c, _GRANTS.c[c]) for c in _GRANT_COLUMNS} | {
        "tenant_id": tenant,
        "created_at": now,
    }
    event = insert(_EVENTS).values(
        tenant_id=tenant,
        id=_param("event_id", _EVENTS.c.id),
        type=literal(CREATED_EVENT),
        data=_param("event_data", _EVENTS.c.data),
        object_id=_param("event_object", _EVENTS.c.object_id),
        created_at=now,
    )
    fan_out = insert(_OUTBOX).from_select(
        [*_OUTBOX_COLUMNS, "available_at", "created_at"],
        _outbox_rows(
            literal(FANOUT_ACTOR),
            _param("fanout_payload", _OUTBOX.c.payload),
            _param("fanout_key", _OUTBOX.c.business_key),
            now,
            tenant,
            _param("fanout_id", _OUTBOX.c.id),
        ).where(exists().where(_SUBSCRIPTIONS.c.tenant_id == tenant, _SUBSCRIPTIONS.c.active.is_(true()))),
    )
    delivery = insert(_OUTBOX).from_select(
        [*_OUTBOX_COLUMNS, "available_at", "created_at"],
        _outbox_rows(
            _param("delivery_actor", _OUTBOX.c.actor),
            _param("delivery_payload", _OUTBOX.c.payload),
            _param("delivery_key", _OUTBOX.c.business_key),
            now,
            tenant,
            _param("delivery_id", _OUTBOX.c.id),
        ),
    )
    items = insert(_ITEMS).values(
        {c: _param(c, _ITEMS.c[c]) for c in _ITEM_COLUMNS} | {"tenant_id": tenant, "created_at": now}
    )
    return {
        "grant": insert(_GRANTS).values(grant_values),
        "grant_values": grant_values,
        "items": items,
        "event": event,
        "fan_out": fan_out,
        "delivery": delivery,
    }


@functools.lru_cache(maxsize=2)
def _pg_single(delivery: bool) -> Insert:
    """One grant in one PostgreSQL statement: the grant's INSERT with its items, event, fan-out row and
    (``delivery``) delivery outbox row as data-modifying CTEs."""
    parts = _statements()
    values = parts["grant_values"]
    units = (
        func.unnest(
            bindparam("item_ids", type_=ARRAY(_ITEMS.c.id.type)),
            bindparam("item_codes", type_=ARRAY(_ITEMS.c.code_id.type)),
            bindparam("item_expiry", type_=ARRAY(_ITEMS.c.expires_at.type)),
        )
        .table_valued(
            column("id", _ITEMS.c.id.type),
            column("code_id", _ITEMS.c.code_id.type),
            column("expires_at", _ITEMS.c.expires_at.type),
        )
        .render_derived()
    )
    unit_rows = select(
        values["tenant_id"],
        units.c.id,
        values["id"],
        units.c.code_id,
        values["member_id"],
        literal("held"),
        units.c.expires_at,
        values["created_at"],
    ).select_from(units)
    ctes = [
        insert(_ITEMS).from_select(list(_ITEM_COLUMNS), unit_rows).cte("new_items"),
        parts["event"].cte("new_event"),
        parts["fan_out"].cte("new_fan_out"),
    ]
    if delivery:
        ctes.append(parts["delivery"].cte("new_delivery"))
    stmt: Insert = parts["grant"].add_cte(*ctes)
    return stmt


def _event_params(new: NewGrant) -> dict[str, Any]:
    event_id = new_id()
    return {
        "event_id": event_id,
        "event_data": new.facts,
        "event_object": str(new.grant.id),
        "fanout_id": new_id(),
        "fanout_payload": {"event_id": str(event_id)},
        "fanout_key": f"webhooks:{event_id}",
    }


def _delivery_params(new: NewGrant) -> dict[str, Any]:
    return {
        "delivery_id": new_id(),
        "delivery_actor": new.delivery_actor,
        "delivery_payload": {"grant_id": str(new.grant.id)},
        "delivery_key": f"{new.delivery_actor}:{new.grant.id}",
    }


async def write_grants(session: AsyncSession, grants: list[NewGrant], now: dt.datetime) -> None:
    """Insert these grants with their items, events (+ fan-out) and delivery rows; attach the grants."""
    if not grants:
        return
    tenant = require_tenant()
    for new in grants:
        new.grant.tenant_id, new.grant.created_at = tenant, now
    common = {"tenant_id": tenant, "now": now}
    connection = await session.connection()  # Core on the connection: no ORM execution overhead
    if connection.dialect.name == "postgresql" and len(grants) == 1:
        new = grants[0]
        params = {c: getattr(new.grant, c) for c in _GRANT_COLUMNS} | common | _event_params(new)
        params |= {
            "item_ids": [i.id for i in new.items],
            "item_codes": [i.code_id for i in new.items],
            "item_expiry": [i.expires_at for i in new.items],
        }
        if new.delivery_actor is not None:
            params |= _delivery_params(new)
        await connection.execute(_pg_single(new.delivery_actor is not None), params)
    else:
        parts = _statements()
        grant_rows = [{c: getattr(n.grant, c) for c in _GRANT_COLUMNS} | common for n in grants]
        await connection.execute(parts["grant"], grant_rows)
        item_rows = [
            {
                "id": i.id,
                "grant_id": n.grant.id,
                "code_id": i.code_id,
                "member_id": n.grant.member_id,
                "status": i.status,
                "expires_at": i.expires_at,
            }
            | common
            for n in grants
            for i in n.items
        ]
        if item_rows:
            await connection.execute(parts["items"], item_rows)
        event_rows = [_event_params(n) | common for n in grants]
        await connection.execute(parts["event"], event_rows)
        await connection.execute(parts["fan_out"], event_rows)
        deliveries = [_delivery_params(n) | common for n in grants if n.delivery_actor is not None]
        if deliveries:
            await connection.execute(parts["delivery"], deliveries)
    for new in grants:
        make_transient_to_detached(new.grant)  # the row exists: the session knows it without a second insert
        session.add(new.grant)
