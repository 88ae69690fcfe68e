"""The ``run_bulk_grant`` job's body: grant a confirmed bulk grant's pending rows in chunks.

The ``pending`` rows are granted in chunks of :data:`CHUNK_ROWS`, one transaction each
(:func:`_grant_chunk`): the chunk's rows are taken (``SKIP LOCKED`` on PostgreSQL), their keys inserted
into the ledger in one statement, and :func:`core.grants.services.grant_many` (``source="bulk"``) grants
them set-based, handing back per row a grant or that row's own error code (``out_of_stock``,
``risk_refused`` …), which is recorded while the chunk's other rows are granted. A chunk that fails as a
whole is rolled back and its rows are granted one by one (:func:`_grant_row`). Why the keys make this
exactly once: :mod:`core.bulk_grants.services`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core.audit.services import record
from core.bulk_grants.messages import failure_code
from core.bulk_grants.models import BulkGrant, BulkGrantKey, BulkGrantRow
from core.bulk_grants.schemas import BulkOutcome
from core.bulk_grants.services import dialect_insert, get_bulk_grant, granted_keys, open_contact
from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.ids import new_id
from core.db.results import rowcount
from core.db.session import Database
from core.errors import Conflict, DomainError, NotFound
from core.grants import services as grant_services  # looked up per call: tests replace its functions
from core.grants.models import Grant
from core.grants.schemas import GrantRequest
from core.jobs import progress
from core.kernel import Kernel

log = structlog.get_logger("kaquan.bulk_grants")

#: Rows per chunk of the job: one transaction, one member upsert, one pick per product, one flush.
CHUNK_ROWS = 200

ProgressCallback = Callable[[int, int], Awaitable[None] | None]


async def _advance(db: Database, job_id: uuid.UUID, done: int) -> None:
    try:
        async with db.transaction() as s:
            await progress.advance(s, job_id, done)
    except (Conflict, NotFound):
        pass  # finished by another run, or gone: progress is informative only


async def _take_key(s: AsyncSession, row: BulkGrantRow) -> bool:
    """Insert the row's key into the ledger; ``False`` when it is there already (granted before)."""
    assert row.row_key is not None
    stmt = (
        dialect_insert(s)(BulkGrantKey)
        .values(
            id=new_id(),
            created_at=utcnow(),
            row_key=row.row_key,
            bulk_grant_id=row.bulk_grant_id,
            row_number=row.row_number,
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "row_key"])
        .returning(BulkGrantKey.id)
    )
    return (await s.execute(stmt)).first() is not None


async def _grant_row(kernel: Kernel, bulk: BulkGrant, row_id: uuid.UUID) -> str | None:
    """Grant one row in its own transaction: ``granted``, ``already_granted``, an error code, or None (taken).

    The fallback for a chunk that failed as a whole (see :func:`_grant_chunk`): row by row, so a row that
    breaks its chunk is isolated and the others are still granted.
    """
    db = kernel.db
    try:
        async with db.transaction() as s:
            taken = await s.execute(
                update(BulkGrantRow)
                .where(BulkGrantRow.id == row_id, BulkGrantRow.status == "pending")
                .values(processed_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if not rowcount(taken):
                return None  # another run has it (or had it)
            row = (await s.execute(select(BulkGrantRow).where(BulkGrantRow.id == row_id))).scalar_one()
            if not await _take_key(s, row):
                earlier = (
                    await s.execute(select(BulkGrantKey).where(BulkGrantKey.row_key == row.row_key))
                ).scalar_one()
                row.status, row.grant_id, row.grant_ref = (
                    "already_granted",
                    earlier.grant_id,
                    earlier.grant_ref,
                )
                return "already_granted"
            request = _request(bulk, row, open_contact(await kernel.keys.cipher(s), row))
            grant = await grant_services.create_grant(
                s, kernel, request, source="bulk", client_id=bulk.client_id, user_id=bulk.user_id
            )
            await s.execute(
                update(BulkGrantKey)
                .where(BulkGrantKey.row_key == row.row_key)
                .values(grant_id=grant.id, grant_ref=grant.ref)
                .execution_options(synchronize_session=False)
            )
            row.status, row.grant_id, row.grant_ref = "granted", grant.id, grant.ref
            return "granted"
    except DomainError as exc:
        code = failure_code(exc)
    except Exception as exc:  # boundary: one row of a bulk job; it fails alone, the rest go on
        code = "grant_failed"
        log.warning(
            "bulk_grant_row_failed",
            bulk_grant_id=str(bulk.id),
            row_id=str(row_id),
            error_type=type(exc).__name__,
            exc_info=True,
        )
    async with db.transaction() as s:
        await s.execute(
            update(BulkGrantRow)
            .where(BulkGrantRow.id == row_id, BulkGrantRow.status == "pending")
            .values(status="failed", error_code=code[:60], processed_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    return code


def _request(bulk: BulkGrant, row: BulkGrantRow, contact: tuple[str, str | None, str | None]) -> GrantRequest:
    name, phone, email = contact
    assert row.product_id is not None
    return GrantRequest(
        product_id=row.product_id,
        quantity=row.quantity,
        phone=phone,
        email=email,
        name=name or None,
        channel=bulk.channel,
        campaign_ref=bulk.campaign_ref or None,
    )


@functools.lru_cache(maxsize=1)
def _claim_statement() -> Any:
    """SQLite: take the next pending rows of a bulk grant (file order) for this run; marks, returns their ids.

    The statement takes the database's write lock first thing (SQLite has one writer), so a second run
    waits and then sees the first run's rows as no longer pending. PostgreSQL locks the rows instead
    (``FOR UPDATE SKIP LOCKED``, see :func:`_grant_chunk`).
    """
    t = BulkGrantRow.__table__.c
    tenant = bindparam("tenant", type_=t.tenant_id.type)
    picked = (
        select(t.id)
        .where(
            t.tenant_id == tenant,
            t.bulk_grant_id == bindparam("bulk", type_=t.bulk_grant_id.type),
            t.status == "pending",
        )
        .order_by(t.row_number)
        .limit(bindparam("n"))
    )
    return (
        update(BulkGrantRow.__table__)
        .where(t.tenant_id == tenant, t.id.in_(picked.scalar_subquery()), t.status == "pending")
        .values(processed_at=bindparam("now", type_=t.processed_at.type))
        .returning(t.id)
    )


@functools.lru_cache(maxsize=4)
def _key_insert_statement(dialect: str) -> Any:
    """Claim row keys in the ledger (batched); returns the keys that were new."""
    table = BulkGrantKey.__table__
    upsert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        upsert(table)
        .on_conflict_do_nothing(index_elements=["tenant_id", "row_key"])
        .returning(table.c.row_key)
    )


@functools.lru_cache(maxsize=4)
def _row_update_statement() -> Any:
    t = BulkGrantRow.__table__.c
    return (
        update(BulkGrantRow.__table__)
        .where(t.tenant_id == bindparam("b_tenant", type_=t.tenant_id.type), t.id == bindparam("b_id"))
        .values(
            status=bindparam("b_status"),
            error_code=bindparam("b_error"),
            grant_id=bindparam("b_grant_id"),
            grant_ref=bindparam("b_grant_ref"),
            processed_at=bindparam("b_now"),
        )
    )


@functools.lru_cache(maxsize=4)
def _key_update_statement() -> Any:
    t = BulkGrantKey.__table__.c
    return (
        update(BulkGrantKey.__table__)
        .where(t.tenant_id == bindparam("b_tenant", type_=t.tenant_id.type), t.row_key == bindparam("b_key"))
        .values(grant_id=bindparam("b_grant_id"), grant_ref=bindparam("b_grant_ref"))
    )


async def _grant_chunk(
    s: AsyncSession, kernel: Kernel, bulk: BulkGrant, size: int, taken: list[uuid.UUID]
) -> list[uuid.UUID]:
    """Take up to ``size`` pending rows and grant them, set-based, in the caller's (one) transaction.

    1. the rows are taken: locked with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (a second run takes
       others), marked under SQLite's write lock (:func:`_claim_statement`);
    2. their keys go into the ledger in one ``INSERT … ON CONFLICT DO NOTHING``; a key already there means
       the row was granted before (by this or another bulk grant): it is marked ``already_granted``;
    3. :func:`core.grants.services.grant_many` grants the rest — members upserted in one statement, one
       ``SKIP LOCKED`` pick per product, the grants, items, audit, events and outbox rows in one flush —
       and hands back per row a grant or the error of that row alone (out of stock, risk refused …);
    4. the rows are updated in one ``executemany``; failed rows give their key back (a later run may
       grant them), granted rows' keys name their grant.

    Returns the ids of the rows taken (empty: nothing left for this run), also appended to ``taken`` as
    soon as they are known. The chunk commits or rolls back as one: a worker killed in the middle loses
    the chunk's work and grants nothing twice.
    """
    tenant_id = require_tenant()
    now = utcnow()
    connection = await s.connection()
    rows = await _take_rows(s, connection, bulk, size, taken, tenant_id, now)
    if not rows:
        return []
    key_of = {r.id: r.row_key or "" for r in rows}
    new_keys = await _claim_keys(connection, rows, key_of, tenant_id, now)
    earlier = await granted_keys(s, [key_of[r.id] for r in rows if key_of[r.id] not in new_keys])
    todo = [r for r in rows if key_of[r.id] in new_keys]
    cipher = await kernel.keys.cipher(s)
    requests = [_request(bulk, r, open_contact(cipher, r)) for r in todo]
    results = (
        await grant_services.grant_many(
            s,
            kernel,
            requests,
            source="bulk",
            purpose=f"bulk-grant:{bulk.id}",
            client_id=bulk.client_id,
            user_id=bulk.user_id,
        )
        if requests
        else []
    )
    outcomes = _Outcomes()
    for r in rows:
        if key_of[r.id] not in new_keys:
            gid, ref = earlier.get(key_of[r.id], (None, None))
            outcomes.rows.append(_row_values(tenant_id, r.id, "already_granted", None, gid, ref, now))
    for r, result in zip(todo, results, strict=True):
        outcomes.add(tenant_id, r, key_of[r.id], result, now)
    await _write_outcomes(connection, outcomes, tenant_id, now)
    for r in rows:
        s.expunge(r)  # the rows were updated by Core statements: drop the stale objects
    return [r.id for r in rows]


async def _take_rows(
    s: AsyncSession,
    connection: AsyncConnection,
    bulk: BulkGrant,
    size: int,
    taken: list[uuid.UUID],
    tenant_id: uuid.UUID,
    now: dt.datetime,
) -> list[BulkGrantRow]:
    """Step 1 of :func:`_grant_chunk`: the next ``size`` pending rows, in file order, for this run alone."""
    if connection.dialect.name == "postgresql":
        # The rows are locked, not written: a second run skips them, and a killed worker's locks go with
        # its connection.
        rows = list(
            (
                await s.execute(
                    select(BulkGrantRow)
                    .where(BulkGrantRow.bulk_grant_id == bulk.id, BulkGrantRow.status == "pending")
                    .order_by(BulkGrantRow.row_number)
                    .limit(size)
                    .with_for_update(skip_locked=True)
                )
            ).scalars()
        )
        taken.extend(r.id for r in rows)
        return rows
    ids = list(
        (
            await connection.execute(
                _claim_statement(),
                {"tenant": tenant_id, "bulk": bulk.id, "n": size, "now": now},
            )
        ).scalars()
    )
    taken.extend(ids)
    if not ids:
        return []
    return list(
        (
            await s.execute(
                select(BulkGrantRow).where(BulkGrantRow.id.in_(ids)).order_by(BulkGrantRow.row_number)
            )
        ).scalars()
    )


async def _claim_keys(
    connection: AsyncConnection,
    rows: list[BulkGrantRow],
    key_of: dict[uuid.UUID, str],
    tenant_id: uuid.UUID,
    now: dt.datetime,
) -> set[str]:
    """Step 2: insert the rows' keys into the ledger in one statement; the keys that were new."""
    return set(
        (
            await connection.execute(
                _key_insert_statement(connection.dialect.name),
                [
                    {
                        "id": new_id(),
                        "created_at": now,
                        "row_key": key_of[r.id],
                        "bulk_grant_id": r.bulk_grant_id,
                        "row_number": r.row_number,
                    }
                    for r in sorted(rows, key=lambda r: key_of[r.id])  # one lock order for every run
                ],
            )
        ).scalars()
    )


@dataclass
class _Outcomes:
    """Step 4's writes: the rows' new values, the keys that name their grant, the keys given back."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    keys: list[dict[str, Any]] = field(default_factory=list)
    given_back: list[str] = field(default_factory=list)

    def add(
        self, tenant_id: uuid.UUID, r: BulkGrantRow, key: str, result: Grant | DomainError, now: dt.datetime
    ) -> None:
        """A granted row names its grant on its key; a failed row gives its key back."""
        if isinstance(result, DomainError):
            self.rows.append(_row_values(tenant_id, r.id, "failed", failure_code(result), None, None, now))
            self.given_back.append(key)
        else:
            self.rows.append(_row_values(tenant_id, r.id, "granted", None, result.id, result.ref, now))
            self.keys.append(
                {"b_tenant": tenant_id, "b_key": key, "b_grant_id": result.id, "b_grant_ref": result.ref}
            )


async def _write_outcomes(
    connection: AsyncConnection, outcomes: _Outcomes, tenant_id: uuid.UUID, now: dt.datetime
) -> None:
    """Step 4: the rows and keys updated in one statement each (PostgreSQL) or one ``executemany``."""
    if connection.dialect.name == "postgresql":  # one statement each, whatever the chunk's size
        await connection.execute(_PG_ROW_UPDATE, _columns(outcomes.rows, tenant_id, now))
        if outcomes.keys:
            await connection.execute(_PG_KEY_UPDATE, _columns(outcomes.keys, tenant_id, now))
    else:
        await connection.execute(_row_update_statement(), outcomes.rows)
        if outcomes.keys:
            await connection.execute(_key_update_statement(), outcomes.keys)
    if outcomes.given_back:
        await connection.execute(
            delete(BulkGrantKey.__table__).where(
                BulkGrantKey.__table__.c.tenant_id == tenant_id,
                BulkGrantKey.__table__.c.row_key.in_(outcomes.given_back),
            )
        )


_PG_ROW_UPDATE = text(
    "UPDATE bulk_grant_rows AS r SET status = v.status, error_code = v.error_code, grant_id = v.grant_id, "
    "grant_ref = v.grant_ref, processed_at = :now "
    "FROM unnest(CAST(:b_id AS uuid[]), CAST(:b_status AS varchar[]), CAST(:b_error AS varchar[]), "
    "CAST(:b_grant_id AS uuid[]), CAST(:b_grant_ref AS varchar[])) AS v(id, status, error_code, grant_id, grant_ref) "
    "WHERE r.tenant_id = :tenant AND r.id = v.id"
)
_PG_KEY_UPDATE = text(
    "UPDATE bulk_grant_keys AS k SET grant_id = v.grant_id, grant_ref = v.grant_ref "
    "FROM unnest(CAST(:b_key AS varchar[]), CAST(:b_grant_id AS uuid[]), CAST(:b_grant_ref AS varchar[])) "
    "AS v(row_key, grant_id, grant_ref) WHERE k.tenant_id = :tenant AND k.row_key = v.row_key"
)


def _columns(values: list[dict[str, Any]], tenant_id: uuid.UUID, now: Any) -> dict[str, Any]:
    """``executemany`` parameters as one array per column (for an ``UPDATE … FROM unnest(…)``)."""
    names = [k for k in values[0] if k not in ("b_tenant", "b_now")]
    return {"tenant": tenant_id, "now": now} | {k: [v[k] for v in values] for k in names}


def _row_values(
    tenant_id: uuid.UUID,
    row_id: uuid.UUID,
    status: str,
    error: str | None,
    grant_id: uuid.UUID | None,
    grant_ref: str | None,
    now: Any,
) -> dict[str, Any]:
    return {
        "b_tenant": tenant_id,
        "b_id": row_id,
        "b_status": status,
        "b_error": error,
        "b_grant_id": grant_id,
        "b_grant_ref": grant_ref,
        "b_now": now,
    }


async def _pending(s: AsyncSession, bulk_id: uuid.UUID) -> int:
    return int(
        await s.scalar(
            select(func.count())
            .select_from(BulkGrantRow)
            .where(BulkGrantRow.bulk_grant_id == bulk_id, BulkGrantRow.status == "pending")
        )
        or 0
    )


async def _recount(s: AsyncSession, bulk: BulkGrant) -> dict[str, int]:
    counts = dict(
        (
            await s.execute(
                select(BulkGrantRow.status, func.count())
                .where(BulkGrantRow.bulk_grant_id == bulk.id)
                .group_by(BulkGrantRow.status)
            )
        ).all()
    )
    bulk.granted = int(counts.get("granted", 0))
    bulk.failed = int(counts.get("failed", 0))
    bulk.already_granted = int(counts.get("already_granted", 0))
    return {k: int(v) for k, v in counts.items()}


async def _errors(s: AsyncSession, bulk_id: uuid.UUID) -> dict[str, int]:
    found = await s.execute(
        select(BulkGrantRow.error_code, func.count())
        .where(BulkGrantRow.bulk_grant_id == bulk_id, BulkGrantRow.status == "failed")
        .group_by(BulkGrantRow.error_code)
    )
    return {str(code or "grant_failed"): int(n) for code, n in found.all()}


async def run_bulk_grant(
    kernel: Kernel,
    bulk_id: uuid.UUID,
    *,
    on_progress: ProgressCallback | None = None,
    chunk_rows: int | None = None,
) -> BulkOutcome:
    """Grant every pending row of a confirmed bulk grant (the ``run_bulk_grant`` job's body; resumable).

    Rows are granted in chunks of ``chunk_rows`` (default :data:`CHUNK_ROWS`), one transaction each
    (:func:`_grant_chunk`); the job's progress moves in the same transaction. A chunk that fails as a whole
    (not a row's own error: those are recorded per row) is rolled back and its rows are granted one by one,
    so one bad row cannot hold back the good ones. A second or concurrent run takes other rows, so a
    redelivered message after a crash finishes what is left and grants nothing twice. If the run itself
    stops (the database, say), the bulk grant is marked ``failed`` and can be confirmed again.
    """
    size = max(1, chunk_rows or CHUNK_ROWS)
    db = kernel.db
    async with db.transaction() as s:
        bulk = (await s.execute(select(BulkGrant).where(BulkGrant.id == bulk_id))).scalar_one_or_none()
        if bulk is None or bulk.status not in ("queued", "running"):
            log.info(
                "bulk_grant_skipped", bulk_grant_id=str(bulk_id), status=bulk.status if bulk else "missing"
            )
            return BulkOutcome(bulk_grant_id=bulk_id, status="skipped")
        bulk.status = "running"
        job_id = bulk.job_id
        pending = await _pending(s, bulk_id)
        total = (await progress.get(s, job_id)).total if job_id else pending
    try:
        if job_id is not None:
            await _advance(db, job_id, max(total - pending, 0))
        await _grant_chunks(kernel, bulk, job_id, size, total, on_progress)
        return await _finish(db, bulk_id, job_id)
    except Exception as exc:  # boundary: the bulk job; whatever stops it is recorded on the bulk grant
        return await _stopped(db, bulk_id, job_id, exc)


async def _grant_chunks(
    kernel: Kernel,
    bulk: BulkGrant,
    job_id: uuid.UUID | None,
    size: int,
    total: int,
    on_progress: ProgressCallback | None,
) -> None:
    """Grant chunk after chunk until no pending row is left for this run; the job's progress moves with
    each chunk. A chunk that fails as a whole is granted again row by row (:func:`_grant_row`)."""
    db, bulk_id = kernel.db, bulk.id
    while True:
        ids: list[uuid.UUID] = []
        try:
            async with db.transaction() as s:
                ids = await _grant_chunk(s, kernel, bulk, size, ids)
                if not ids:
                    return
                done = max(total - await _pending(s, bulk_id), 0)
                if job_id is not None:
                    with contextlib.suppress(Conflict, NotFound):
                        await progress.advance(s, job_id, done)
        except DomainError:
            raise
        except Exception as exc:  # boundary: one chunk of a bulk job; its rows are retried one by one
            if not ids:
                raise  # the rows could not even be taken: the database, not a row
            log.warning(
                "bulk_grant_chunk_failed",
                bulk_grant_id=str(bulk_id),
                rows=len(ids),
                error_type=type(exc).__name__,
                exc_info=True,
            )
            for row_id in ids:  # the chunk rolled back: its rows one by one
                await _grant_row(kernel, bulk, row_id)
            async with db.transaction() as s:
                done = max(total - await _pending(s, bulk_id), 0)
            if job_id is not None:
                await _advance(db, job_id, done)
        if on_progress is not None:
            maybe = on_progress(done, total)
            if maybe is not None:
                await maybe


async def _finish(db: Database, bulk_id: uuid.UUID, job_id: uuid.UUID | None) -> BulkOutcome:
    """Count the rows' outcomes; the last run to finish marks the bulk grant (and its job) done."""
    async with db.transaction() as s:
        bulk = (
            await s.execute(select(BulkGrant).where(BulkGrant.id == bulk_id).with_for_update())
        ).scalar_one()
        counts = await _recount(s, bulk)
        errors = await _errors(s, bulk_id)
        if counts.get("pending", 0):
            # Rows another run holds right now: the last run to finish marks the bulk grant done.
            log.info("bulk_grant_part_done", bulk_grant_id=str(bulk_id), counts=counts)
        elif bulk.status == "running":
            bulk.status, bulk.finished_at = "done", utcnow()
            record(
                s,
                "bulk_grant.finished",
                "bulk_grant",
                bulk.id,
                {
                    "granted": bulk.granted,
                    "failed": bulk.failed,
                    "already_granted": bulk.already_granted,
                    "errors": errors,
                },
            )
            result = {
                "bulk_grant_id": str(bulk.id),
                "granted": bulk.granted,
                "failed": bulk.failed,
                "already_granted": bulk.already_granted,
                "errors": errors,
            }
            if job_id is not None:
                with contextlib.suppress(Conflict, NotFound):
                    await progress.finish(s, job_id, result)
    log.info("bulk_grant_done", bulk_grant_id=str(bulk_id), counts=counts, errors=errors)
    return BulkOutcome(
        bulk_grant_id=bulk_id,
        status="done",
        granted=bulk.granted,
        already_granted=bulk.already_granted,
        failed=bulk.failed,
        errors=errors,
    )


async def _stopped(db: Database, bulk_id: uuid.UUID, job_id: uuid.UUID | None, exc: Exception) -> BulkOutcome:
    """The run stopped: the bulk grant and its job are marked ``failed`` (it may be confirmed again)."""
    kind = exc.code if isinstance(exc, DomainError) else type(exc).__name__
    async with db.transaction() as s:
        failed = await get_bulk_grant(s, bulk_id)
        if failed.status == "running":
            failed.status, failed.error, failed.finished_at = (
                "failed",
                f"bulk grant stopped ({kind})",
                utcnow(),
            )
            await _recount(s, failed)
            record(s, "bulk_grant.failed", "bulk_grant", failed.id, {"error": kind})
        if job_id is not None:
            with contextlib.suppress(Conflict, NotFound):
                await progress.fail(s, job_id, f"bulk grant stopped ({kind})")
    log.warning("bulk_grant_failed", bulk_grant_id=str(bulk_id), error_type=kind, exc_info=True)
    return BulkOutcome(bulk_grant_id=bulk_id, status="failed")
