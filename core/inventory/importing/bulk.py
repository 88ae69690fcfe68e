"""Fast insertion of sealed codes inside the caller's transaction, and chunked digest look-ups.

PostgreSQL: one ``INSERT … SELECT FROM unnest(arrays)`` per chunk (``COPY`` is refused on tables with
row-level security); SQLite: ``executemany`` per chunk. Both use ``ON CONFLICT (tenant_id, digest) DO
NOTHING`` and return how many rows went in, so a code taken since validation is detected, not fatal.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import select, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.crypto.envelope import TenantCipher
from core.db.ids import new_id
from core.inventory.models import Code
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


async def insert_codes(
    session: AsyncSession,
    cipher: TenantCipher,
    rows: Sequence[tuple[str, str | None, int | None]],
    *,
    tenant_id: uuid.UUID,
    product_id: uuid.UUID,
    batch_id: uuid.UUID,
    default_expires_at: dt.datetime | None,
    uses_left: int | None,
    now: dt.datetime,
) -> int:
    """Seal and insert ``rows`` (number, pin, expiry epoch) as available codes; returns how many went in."""
    ids: list[uuid.UUID] = []
    digests: list[str] = []
    secrets_: list[bytes] = []
    last4s: list[str] = []
    has_pins: list[bool] = []
    expires: list[dt.datetime | None] = []
    utc = dt.UTC
    from_ts = dt.datetime.fromtimestamp
    for number, pin, expires_ts in rows:
        sealed = seal(cipher, number, pin)
        ids.append(new_id())
        digests.append(sealed.digest)
        secrets_.append(sealed.secret)
        last4s.append(sealed.last4)
        has_pins.append(sealed.has_pin)
        expires.append(from_ts(expires_ts, utc) if expires_ts is not None else default_expires_at)
    if not ids:
        return 0
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
        return int(result.rowcount)  # type: ignore[attr-defined]
    params = [
        {
            "tenant_id": tenant_id,
            "id": ids[i],
            "product_id": product_id,
            "batch_id": batch_id,
            "digest": digests[i],
            "secret": secrets_[i],
            "last4": last4s[i],
            "has_pin": has_pins[i],
            "state": "available",
            "expires_at": expires[i],
            "uses_left": uses_left,
            "state_changed_at": now,
            "created_at": now,
        }
        for i in range(len(ids))
    ]
    stmt = sqlite_insert(Code.__table__).on_conflict_do_nothing(index_elements=["tenant_id", "digest"])
    result = await session.execute(stmt, params)
    return int(result.rowcount)  # type: ignore[attr-defined]
