"""How far the audit sealer is behind, and what it leaves in ``audit_events``, for either sealing schema.

* **Row sealing** (the first design): each event gets ``seq``/``prev_hash``/``hash`` written into its own row
  after commit; an event is unsealed while ``seq IS NULL``. Every sealed event is an UPDATE, so a dead tuple.
* **Block sealing** (issue 13): events are never updated; each carries its transaction's position (``txid``)
  and a row of ``audit_seals`` seals a tenant's events with position in ``[from_pos, to_pos)``. Blocks of a
  tenant follow each other from position 0, so an event is unsealed while its position is at or above the
  highest ``to_pos`` of its tenant's seals.

:func:`detect` reads the catalog of the database to tell which one is there; the counts are made as the
owner (no row-level security), across tenants.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

# Names the block-sealing schema may use; the first of each list present in the catalog is taken.
_POSITION = ("txid", "position", "pos", "xid")
_UPPER_EXCLUSIVE = ("to_pos", "to_txid", "end_pos", "upper_pos")
_UPPER_INCLUSIVE = ("last_pos", "last_txid", "max_txid")


@dataclass(frozen=True)
class SealSchema:
    kind: str  # "rows" | "blocks"
    unsealed_sql: str
    description: str


async def _columns(conn: Any, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1",
        table,
    )
    return [r["column_name"] for r in rows]


async def detect(conn: Any) -> SealSchema:
    """The sealing schema of the connected database (raises ``SystemExit`` if neither is recognised)."""
    events = await _columns(conn, "audit_events")
    seals = await _columns(conn, "audit_seals")
    if seals:
        position = next((c for c in _POSITION if c in events), None)
        upper = next((c for c in _UPPER_EXCLUSIVE if c in seals), None)
        inclusive = next((c for c in _UPPER_INCLUSIVE if c in seals), None)
        if position and (upper or inclusive):
            top, cmp = (upper, ">=") if upper else (inclusive, ">")
            sql = (
                f"WITH tops AS (SELECT tenant_id, max({top}) AS top FROM audit_seals GROUP BY tenant_id) "
                f"SELECT count(*) FROM audit_events e LEFT JOIN tops t ON t.tenant_id = e.tenant_id "
                f"WHERE (t.top IS NULL OR e.{position} {cmp} t.top) AND ($1::uuid IS NULL OR e.tenant_id = $1)"
            )
            return SealSchema(
                "blocks",
                sql,
                f"block sealing: audit_seals, unsealed = {position} {cmp} the tenant's max({top})",
            )
        raise SystemExit(
            f"audit_seals exists but its columns were not recognised: events {events}, seals {seals}"
        )
    if "seq" in events:
        return SealSchema(
            "rows",
            "SELECT count(*) FROM audit_events WHERE seq IS NULL AND ($1::uuid IS NULL OR tenant_id = $1)",
            "row sealing: unsealed = seq IS NULL",
        )
    raise SystemExit(f"no known audit sealing schema (audit_events columns: {events})")


async def unsealed(conn: Any, schema: SealSchema, tenant_id: uuid.UUID | None = None) -> int:
    """Events not yet sealed, of one tenant or (``None``) of all."""
    return int(await conn.fetchval(schema.unsealed_sql, tenant_id))


@dataclass(frozen=True)
class TableStats:
    """``pg_stat_user_tables`` of one table."""

    live: int
    dead: int
    inserted: int
    updated: int
    hot_updated: int
    deleted: int
    vacuums: int  # manual + auto
    autovacuums: int

    def minus(self, before: TableStats) -> TableStats:
        return TableStats(
            self.live,
            self.dead,
            self.inserted - before.inserted,
            self.updated - before.updated,
            self.hot_updated - before.hot_updated,
            self.deleted - before.deleted,
            self.vacuums - before.vacuums,
            self.autovacuums - before.autovacuums,
        )


async def table_stats(conn: Any, table: str = "audit_events") -> TableStats:
    """The table's statistics as the cumulative statistics system has them now.

    Backends report their counts when a transaction ends, at most once a second (PostgreSQL 15): call this
    a second or two after the writes; ``pg_stat_force_next_flush()`` flushes this connection's own counts.
    The snapshot is cleared first, so two calls in one session see fresh figures.
    """
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    row = await conn.fetchrow(
        "SELECT n_live_tup, n_dead_tup, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, vacuum_count, "
        "autovacuum_count FROM pg_stat_user_tables WHERE relname = $1",
        table,
    )
    if row is None:
        return TableStats(0, 0, 0, 0, 0, 0, 0, 0)
    return TableStats(
        int(row["n_live_tup"]),
        int(row["n_dead_tup"]),
        int(row["n_tup_ins"]),
        int(row["n_tup_upd"]),
        int(row["n_tup_hot_upd"]),
        int(row["n_tup_del"]),
        int(row["vacuum_count"]) + int(row["autovacuum_count"]),
        int(row["autovacuum_count"]),
    )
