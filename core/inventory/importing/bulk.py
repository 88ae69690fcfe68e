"""Fast insertion of sealed codes inside the caller's transaction, and chunked digest look-ups.

PostgreSQL: one ``INSERT … SELECT FROM unnest(arrays)`` per chunk (``COPY`` is refused on tables with
row-level security); SQLite: ``executemany`` per chunk. Both use ``ON CONFLICT (tenant_id, digest) DO
NOTHING`` and return how many rows went in, so a code taken since validation is detected, not fatal.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import and_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.crypto.envelope import TenantCipher
from core.db.context import require_tenant
from core.db.ids import new_id
from core.db.results import rowcount
from core.inventory.models import Batch, Code
from core.inventory.vault import seal

LOOKUP_CHUNK_PG = 10_000
LOOKUP_CHUNK_SQLITE = 900

_PG_INSERT = text(
    """
    INSERT INTO codes (tenant_id, id, product_id, batch_id, digest, secret, last4, has_pin, state,
                       expires_at, uses_left, state_changed_at, created_at)
    SELECT CAST(:tenant_id AS uuid), u.id, CAST(:product_id AS uuid), CAST(:batch_id AS uuid), u.digest,
           u.secret, u.last4, u.has_pin, 'available', u.expires_at, CAST(:uses_left AS integer),
           CAST(:now AS timestamptz), CAST(:now AS timestamptz)
    FROM unnest(CAST(:ids AS uuid[]), CAST(:digests AS varchar[]), CAST(:secrets AS bytea[]),
                CAST(:last4s AS varchar[]), CAST(:has_pins AS boolean[]), CAST(:expires AS timestamptz[]))
         AS u(id, digest, secret, last4, has_pin, expires_at)
    ON CONFLICT (tenant_id, digest) DO NOTHING
    """
)

_SQLITE_INSERT = (
    "INSERT INTO codes (tenant_id, id, product_id, batch_id, digest, secret, last4, has_pin, state, expires_at,"
    " uses_left, state_changed_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'available', ?, ?, ?, ?)"
    " ON CONFLICT (tenant_id, digest) DO NOTHING"
)
_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"

_PG_LOOKUP = text("SELECT digest FROM codes WHERE tenant_id = CAST(:tenant_id AS uuid) AND digest = ANY(:digests)")


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else ""


async def existing_digests(session: AsyncSession, tenant_id: uuid.UUID, digests: Sequence[str]) -> set[str]:
    """Which of ``digests`` the tenant already holds, in any batch and any state."""
    found: set[str] = set()
    if _dialect(session) == "postgresql":
        for start in range(0, len(digests), LOOKUP_CHUNK_PG):
            part = list(digests[start : start + LOOKUP_CHUNK_PG])
            rows = await session.execute(_PG_LOOKUP, {"tenant_id": tenant_id, "digests": part})
            found.update(r[0] for r in rows)
        return found
    for start in range(0, len(digests), LOOKUP_CHUNK_SQLITE):
        part = list(digests[start : start + LOOKUP_CHUNK_SQLITE])
        rows = await session.execute(select(Code.digest).where(Code.digest.in_(part)))
        found.update(r[0] for r in rows)
    return found


async def batches_holding(session: AsyncSession, digests: Sequence[str]) -> dict[str, str]:
    """The reference of the batch holding each of ``digests`` (codes already stocked), to name it in the
    import report; asked only for the few digests :func:`existing_digests` found."""
    found: dict[str, str] = {}
    for start in range(0, len(digests), LOOKUP_CHUNK_SQLITE):
        part = list(digests[start : start + LOOKUP_CHUNK_SQLITE])
        rows = await session.execute(
            select(Code.digest, Batch.ref)
            .join(Batch, and_(Batch.tenant_id == Code.tenant_id, Batch.id == Code.batch_id))
            .where(Code.digest.in_(part))
        )
        found.update((digest, ref) for digest, ref in rows.tuples())
    return found


async def held_in_batches(session: AsyncSession, tenant_id: uuid.UUID, digests: Sequence[str]) -> dict[str, str]:
    """Which of ``digests`` the tenant already holds, each with the reference of the batch holding it."""
    held = await existing_digests(session, tenant_id, digests)
    refs = await batches_holding(session, sorted(held)) if held else {}
    return {d: refs.get(d, "") for d in held}


class SealedChunk(NamedTuple):
    """Column arrays of sealed codes, ready to insert (ciphertexts and digests only)."""

    ids: list[uuid.UUID]
    digests: list[str]
    secrets: list[bytes]
    last4s: list[str]
    has_pins: list[bool]
    expires: list[dt.datetime | None]


def seal_rows(
    cipher: TenantCipher, rows: Sequence[tuple[str, str | None, int | None]], default_expires_at: dt.datetime | None
) -> SealedChunk:
    """Seal ``rows`` (number, pin, expiry epoch) with :func:`core.inventory.vault.seal`; CPU only, thread-safe."""
    out = SealedChunk([], [], [], [], [], [])
    utc, from_ts = dt.UTC, dt.datetime.fromtimestamp
    for number, pin, expires_ts in rows:
        sealed = seal(cipher, number, pin)
        out.ids.append(new_id())
        out.digests.append(sealed.digest)
        out.secrets.append(sealed.secret)
        out.last4s.append(sealed.last4)
        out.has_pins.append(sealed.has_pin)
        out.expires.append(from_ts(expires_ts, utc) if expires_ts is not None else default_expires_at)
    return out


async def write_codes(
    session: AsyncSession,
    chunk: SealedChunk,
    *,
    product_id: uuid.UUID,
    batch_id: uuid.UUID,
    default_expires_at: dt.datetime | None,
    uses_left: int | None,
    now: dt.datetime,
) -> int:
    """Insert sealed codes as ``available`` for the tenant in context, in the session's transaction; returns
    how many went in. (Raw SQL for speed: no column default applies, so the context's tenant is bound here.)"""
    ids, digests, secrets_, last4s, has_pins, expires = chunk
    if not ids:
        return 0
    tenant_id = require_tenant()
    utc = dt.UTC
    if _dialect(session) == "postgresql":
        result = await session.execute(
            _PG_INSERT,
            {
                "tenant_id": tenant_id,
                "product_id": product_id,
                "batch_id": batch_id,
                "uses_left": uses_left,
                "now": now,
                "ids": ids,
                "digests": digests,
                "secrets": secrets_,
                "last4s": last4s,
                "has_pins": has_pins,
                "expires": expires,
            },
        )
        return rowcount(result)
    # SQLite: the stored forms SQLAlchemy would bind (UUID as 32 hex digits, UTC timestamps as text),
    # prepared here once per row and sent through one executemany without per-value bind processing.
    tid, pid, bid = tenant_id.hex, product_id.hex, batch_id.hex
    stamp = now.astimezone(utc).strftime(_SQLITE_TS)
    default_exp = default_expires_at.astimezone(utc).strftime(_SQLITE_TS) if default_expires_at else None
    params = [
        (
            tid, ids[i].hex, pid, bid, digests[i], secrets_[i], last4s[i], has_pins[i],
            default_exp if exp is default_expires_at or exp is None else exp.strftime(_SQLITE_TS),
            uses_left, stamp, stamp,
        )
        for i, exp in enumerate(expires)
    ]
    conn = await session.connection()
    result = await conn.exec_driver_sql(_SQLITE_INSERT, params)
    return int(result.rowcount)


