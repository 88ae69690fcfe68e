"""Bulk grants: validate a recipient file, confirm it, grant it in chunks in a job, give back a result file.

* :func:`create_bulk_grant` reads the upload (:mod:`.parsing`), checks every SKU against the catalog, finds
  duplicate rows and rows already granted, totals the units per product against available stock, and
  stores a ``validated`` :class:`~core.bulk_grants.models.BulkGrant` with one row record per data row
  (contact encrypted under the tenant's data key, masked copy for display).
* :func:`confirm_bulk_grant` creates a job progress record and queues the ``run_bulk_grant`` job through the
  outbox (payload: the bulk grant id only).
* :func:`run_bulk_grant` is the job's body: the ``pending`` rows are granted in chunks of :data:`CHUNK_ROWS`,
  one transaction each (:func:`_grant_chunk`): the chunk's rows are taken (``SKIP LOCKED`` on PostgreSQL),
  their keys inserted into the ledger in one statement, and :func:`core.grants.services.grant_many`
  (``source="bulk"``) grants them set-based, handing back per row a grant or that row's own error code
  (``out_of_stock``, ``risk_refused`` …), which is recorded while the chunk's other rows are granted. A chunk
  that fails as a whole is rolled back and its rows are granted one by one (:func:`_grant_row`).
* :func:`results_csv` renders the per-row result (UTF-8 with BOM, codes masked): the cells as written, and
  each problem in the console's words (:mod:`core.bulk_grants.messages`) next to its stable code.

**Row keys — why (campaign, contact, product) and not (file digest, row number).** A row key is the tenant's
HMAC (the same keyed digest as code look-ups) of the campaign reference, the normalised contact (the phone
in E.164, else the lower-cased e-mail) and the product id. A file digest would change the moment someone
fixes one bad phone number and uploads the corrected file again — and every row already granted would be
granted a second time; a key built from what the row *means* survives edits, reordering, re-saving as XLSX
and re-encoding. Quantity is left out on purpose: a file is refused a second line for the same person and
product (``duplicate_in_file``), so "the same row" is (contact, product), and a corrected quantity on a row
that was already granted must not grant again. To give the same people the same product again (next
month's welfare), use another ``campaign_ref``; the validation report shows beforehand which rows are
already granted. The keys live in ``bulk_grant_keys`` under a unique ``(tenant_id, row_key)``, inserted in
the transaction (the chunk) that creates the grant: re-uploading the file, confirming twice, a redelivered message or
two workers at once can never grant a key twice. Rows that failed hold no key, so a later run can grant them.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import io
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import IO, Any

import msgspec
import structlog
from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.bulk_grants.messages import failure_code, is_zh, row_message
from core.bulk_grants.models import BulkGrant, BulkGrantKey, BulkGrantRow
from core.bulk_grants.parsing import PROBLEMS, RecipientRow, mask_contact, read_rows
from core.bulk_grants.schemas import BulkGrantFields, BulkGrantOut, BulkOutcome, ProductTotal
from core.catalog.models import Product
from core.crypto.envelope import TenantCipher
from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.ids import new_id
from core.db.paging import keyset_page
from core.db.session import Database
from core.errors import Conflict, DomainError, NotFound, ValidationFailed
from core.grants.models import GrantItem
from core.grants.schemas import GrantRequest
from core.inventory.allocation import count_available
from core.inventory.importing.parsing import open_upload
from core.inventory.models import Code
from core.inventory.vault import masked
from core.jobs import outbox, progress
from core.jobs.models import JobRecord
from core.kernel import Kernel

log = structlog.get_logger("kaquan.bulk_grants")

BULK_JOB = "run_bulk_grant"
BULK_KIND = "grants.bulk"
#: Recipients per file (a welfare list; bigger lists are split).
MAX_ROWS = 10_000
#: Problems listed one by one in the report (the counts cover all of them; the rows keep theirs).
REPORT_PROBLEMS = 500
#: Rows per chunk of the job: one transaction, one member upsert, one pick per product, one flush.
CHUNK_ROWS = 200
_CHUNK = 500

ProgressCallback = Callable[[int, int], Awaitable[None] | None]


# --------------------------------------------------------------------------------------------- helpers


def row_key(cipher: TenantCipher, campaign_ref: str, contact: str, product_id: uuid.UUID) -> str:
    """The row's exactly-once key (see the module docstring): keyed HMAC of campaign, contact and product."""
    material = "\x1f".join(("bulk-grant", campaign_ref.strip(), contact, str(product_id)))
    return cipher.digest(material.encode("utf-8"))


def _row_aad(bulk_id: uuid.UUID, row_number: int) -> bytes:
    return f"bulk-grant-row:{bulk_id}:{row_number}".encode()


def seal_contact(cipher: TenantCipher, bulk_id: uuid.UUID, row: RecipientRow) -> bytes:
    """Name, phone, e-mail and the cells as written of a row, encrypted (bound to the bulk grant and row)."""
    return cipher.encrypt(
        msgspec.msgpack.encode([row.name, row.phone, row.email, row.written]), aad=_row_aad(bulk_id, row.row)
    )


def _open_row(cipher: TenantCipher, row: BulkGrantRow) -> list[Any]:
    if row.contact_secret is None:
        return []
    return list(
        msgspec.msgpack.decode(
            cipher.decrypt(row.contact_secret, aad=_row_aad(row.bulk_grant_id, row.row_number))
        )
    )


def open_contact(cipher: TenantCipher, row: BulkGrantRow) -> tuple[str, str | None, str | None]:
    """(name, phone, e-mail) of a stored row."""
    sealed = _open_row(cipher, row)
    if not sealed:
        return "", None, None
    return sealed[0], sealed[1], sealed[2]


def open_written(cipher: TenantCipher, row: BulkGrantRow) -> dict[str, str]:
    """The row's cells as the file had them (empty for rows stored before they were kept)."""
    sealed = _open_row(cipher, row)
    return dict(sealed[3]) if len(sealed) > 3 else {}


def bulk_out(bulk: BulkGrant) -> BulkGrantOut:
    return BulkGrantOut(
        id=bulk.id,
        status=bulk.status,
        campaign_ref=bulk.campaign_ref,
        channel=bulk.channel,
        filename=bulk.filename,
        file_format=bulk.file_format,
        encoding=bulk.encoding,
        size_bytes=bulk.size_bytes,
        total_rows=bulk.total_rows,
        valid_rows=bulk.valid_rows,
        already_granted=bulk.already_granted,
        granted=bulk.granted,
        failed=bulk.failed,
        report=dict(bulk.report or {}),
        job_id=bulk.job_id,
        error=bulk.error,
        created_at=bulk.created_at,
        confirmed_at=bulk.confirmed_at,
        finished_at=bulk.finished_at,
    )


async def get_bulk_grant(session: AsyncSession, bulk_id: uuid.UUID) -> BulkGrant:
    bulk = (await session.execute(select(BulkGrant).where(BulkGrant.id == bulk_id))).scalar_one_or_none()
    if bulk is None:
        raise NotFound("Bulk grant not found", "批量发放记录不存在", code="bulk_grant_not_found")
    return bulk


async def list_bulk_grants(
    session: AsyncSession, *, before: uuid.UUID | None = None, limit: int = 50
) -> tuple[list[BulkGrant], uuid.UUID | None]:
    """Newest first; pass the returned cursor as ``before`` for the next page."""
    page = await keyset_page(session, select(BulkGrant), BulkGrant.id, cursor=before, limit=limit)
    return page.items, page.next_cursor


def _insert(session: AsyncSession) -> Any:
    dialect = session.bind.dialect.name if session.bind is not None else ""
    if dialect not in ("postgresql", "sqlite"):
        raise RuntimeError(f"bulk grants do not support {dialect!r}")
    return pg_insert if dialect == "postgresql" else sqlite_insert


# --------------------------------------------------------------------------------------------- validate


async def _products(session: AsyncSession, skus: set[str]) -> dict[str, Product]:
    found: dict[str, Product] = {}
    ordered = sorted(skus)
    for start in range(0, len(ordered), _CHUNK):
        part = ordered[start : start + _CHUNK]
        for p in (await session.execute(select(Product).where(Product.sku.in_(part)))).scalars():
            found[p.sku] = p
    return found


async def _granted_keys(
    session: AsyncSession, keys: list[str]
) -> dict[str, tuple[uuid.UUID | None, str | None]]:
    """Keys already in the ledger → (grant id, grant ref) of the grant made for them."""
    held: dict[str, tuple[uuid.UUID | None, str | None]] = {}
    for start in range(0, len(keys), _CHUNK):
        part = keys[start : start + _CHUNK]
        found = await session.execute(
            select(BulkGrantKey.row_key, BulkGrantKey.grant_id, BulkGrantKey.grant_ref).where(
                BulkGrantKey.row_key.in_(part)
            )
        )
        held.update({k: (gid, ref) for k, gid, ref in found.all()})
    return held


async def create_bulk_grant(
    session: AsyncSession,
    kernel: Kernel,
    file: IO[bytes],
    filename: str,
    fields: BulkGrantFields,
    *,
    max_bytes: int,
    user_id: uuid.UUID | None = None,
    client_id: uuid.UUID | None = None,
) -> BulkGrant:
    """Read and validate a recipient file; store the report and the rows (nothing is granted yet)."""
    tenant_id = require_tenant()
    upload = await asyncio.to_thread(open_upload, file, filename, max_bytes=max_bytes)
    columns, rows = await asyncio.to_thread(read_rows, upload, MAX_ROWS)
    campaign = fields.campaign_ref.strip()
    products = await _products(session, {r.sku for r in rows if r.sku})
    seen: set[tuple[str, str]] = set()
    for r in rows:
        product = products.get(r.sku) if r.sku else None
        if r.sku and product is None:
            r.problems.append("unknown_sku")
        elif product is not None and product.status != "active":
            r.problems.append("product_inactive")
        if r.contact and r.sku:
            ident = (r.contact, r.sku)
            if ident in seen:
                r.problems.append("duplicate_in_file")
            seen.add(ident)
    cipher = await kernel.keys.cipher(session)
    bulk_id = new_id()
    keys: dict[int, str] = {}
    for r in rows:
        if not r.problems and r.contact:
            keys[r.row] = row_key(cipher, campaign, r.contact, products[r.sku].id)
    granted = await _granted_keys(session, list(keys.values()))

    now = utcnow()
    problem_counts: Counter[str] = Counter()
    listed: list[dict[str, Any]] = []
    per_product: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    values: list[dict[str, Any]] = []
    valid = already = 0
    for r in rows:
        product = products.get(r.sku)
        key = keys.get(r.row)
        if r.problems:
            status = "invalid"
            problem_counts.update(r.problems)
            if len(listed) < REPORT_PROBLEMS:
                listed.append({"row": r.row, "codes": [p for p in PROBLEMS if p in r.problems]})
        elif key in granted:
            status, already = "already_granted", already + 1
        else:
            status, valid = "pending", valid + 1
            totals = per_product[r.sku]
            totals[0] += 1
            totals[1] += r.quantity
        earlier = granted.get(key) if status == "already_granted" and key else None
        values.append(
            {
                "tenant_id": tenant_id,
                "id": new_id(),
                "created_at": now,
                "bulk_grant_id": bulk_id,
                "row_number": r.row,
                "row_key": key,
                "contact_masked": mask_contact(r.phone, r.email),
                "contact_secret": seal_contact(cipher, bulk_id, r),
                "sku": r.sku,
                "product_id": product.id if product is not None else None,
                "quantity": r.quantity,
                "status": status,
                "problems": r.problems,
                "error_code": None,
                "grant_id": earlier[0] if earlier else None,
                "grant_ref": earlier[1] if earlier else None,
                "processed_at": None,
            }
        )
    totals_out: list[ProductTotal] = []
    for sku, (n_rows, quantity) in sorted(per_product.items()):
        product = products[sku]
        available = await count_available(session, product.id)
        totals_out.append(
            ProductTotal(
                sku=sku,
                product_id=product.id,
                name=product.name_zh,
                rows=n_rows,
                quantity=quantity,
                available=available,
                shortfall=max(quantity - available, 0),
            )
        )
    report = {
        "columns": columns.describe(),
        "file_format": upload.file_format,
        "encoding": upload.encoding,
        "total_rows": len(rows),
        "valid_rows": valid,
        "invalid_rows": len(rows) - valid - already,
        "already_granted": already,
        "problem_counts": {p: problem_counts[p] for p in PROBLEMS if problem_counts[p]},
        "problems": listed,
        "products": msgspec.to_builtins(totals_out),
        "short_of_stock": any(t.shortfall for t in totals_out),
    }
    bulk = BulkGrant(
        id=bulk_id,
        campaign_ref=campaign,
        channel=fields.channel,
        filename=(filename or "recipients.csv")[-255:],
        size_bytes=upload.size,
        file_format=upload.file_format,
        encoding=upload.encoding or "",
        status="validated",
        report=report,
        total_rows=len(rows),
        valid_rows=valid,
        already_granted=already,
        user_id=user_id,
        client_id=client_id,
    )
    session.add(bulk)
    await session.flush()
    for start in range(0, len(values), _CHUNK):
        await session.execute(_insert(session)(BulkGrantRow), values[start : start + _CHUNK])
    record(
        session,
        "bulk_grant.validated",
        "bulk_grant",
        bulk.id,
        {
            "filename": bulk.filename,
            "campaign_ref": campaign,
            "total_rows": len(rows),
            "valid_rows": valid,
            "already_granted": already,
            "problems": report["problem_counts"],
        },
    )
    log.info(
        "bulk_grant_validated",
        bulk_grant_id=str(bulk.id),
        total_rows=len(rows),
        valid_rows=valid,
        already_granted=already,
        problems=report["problem_counts"],
    )
    return bulk


# --------------------------------------------------------------------------------------------- confirm


async def confirm_bulk_grant(
    session: AsyncSession, bulk_id: uuid.UUID, *, enqueue: bool = True
) -> tuple[BulkGrant, JobRecord]:
    """Queue the grant job for the pending rows; confirming a queued or running one returns its job."""
    bulk = await get_bulk_grant(session, bulk_id)
    if bulk.status in ("queued", "running") and bulk.job_id is not None:
        return bulk, await progress.get(session, bulk.job_id)
    if bulk.status == "done":
        raise Conflict("This bulk grant is already done", "该批量发放已完成", code="bulk_grant_already_done")
    pending = int(
        await session.scalar(
            select(func.count())
            .select_from(BulkGrantRow)
            .where(BulkGrantRow.bulk_grant_id == bulk.id, BulkGrantRow.status == "pending")
        )
        or 0
    )
    if pending == 0:
        raise ValidationFailed(
            "No row can be granted: every row has a problem or was granted before",
            "没有可发放的行：所有行都有问题或已发放过",
            code="bulk_nothing_to_grant",
            extra={"total_rows": bulk.total_rows, "already_granted": bulk.already_granted},
        )
    job = await progress.create(session, BULK_KIND, total=pending)
    bulk.status, bulk.job_id, bulk.error, bulk.confirmed_at = "queued", job.id, None, utcnow()
    if enqueue:
        outbox.enqueue(
            session, BULK_JOB, {"bulk_grant_id": str(bulk.id)}, business_key=f"bulk-grant:{bulk.id}:{job.id}"
        )
    record(session, "bulk_grant.confirmed", "bulk_grant", bulk.id, {"job_id": str(job.id), "rows": pending})
    await session.flush()
    return bulk, job


# --------------------------------------------------------------------------------------------- run


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
        _insert(s)(BulkGrantKey)
        .values(
            tenant_id=require_tenant(),
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
    from core.grants.services import create_grant

    db = kernel.db
    try:
        async with db.transaction() as s:
            taken = await s.execute(
                update(BulkGrantRow)
                .where(BulkGrantRow.id == row_id, BulkGrantRow.status == "pending")
                .values(processed_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if not taken.rowcount:  # type: ignore[attr-defined]
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
            grant = await create_grant(
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
    except Exception as exc:
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
    from core.grants.services import grant_many

    tenant_id = require_tenant()
    now = utcnow()
    connection = await s.connection()
    postgres = connection.dialect.name == "postgresql"
    if postgres:
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
    else:
        ids = list(
            (
                await connection.execute(
                    _claim_statement(),
                    {"tenant": tenant_id, "bulk": bulk.id, "n": size, "now": now},
                )
            ).scalars()
        )
        taken.extend(ids)
        rows = (
            list(
                (
                    await s.execute(
                        select(BulkGrantRow).where(BulkGrantRow.id.in_(ids)).order_by(BulkGrantRow.row_number)
                    )
                ).scalars()
            )
            if ids
            else []
        )
    if not rows:
        return []
    key_of = {r.id: r.row_key or "" for r in rows}
    new_keys = set(
        (
            await connection.execute(
                _key_insert_statement(connection.dialect.name),
                [
                    {
                        "tenant_id": tenant_id,
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
    earlier = await _granted_keys(s, [key_of[r.id] for r in rows if key_of[r.id] not in new_keys])
    todo = [r for r in rows if key_of[r.id] in new_keys]
    cipher = await kernel.keys.cipher(s)
    requests = [_request(bulk, r, open_contact(cipher, r)) for r in todo]
    results = (
        await grant_many(
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
    updates: list[dict[str, Any]] = []
    key_updates: list[dict[str, Any]] = []
    given_back: list[str] = []
    for r in rows:
        if key_of[r.id] not in new_keys:
            gid, ref = earlier.get(key_of[r.id], (None, None))
            updates.append(_row_values(tenant_id, r.id, "already_granted", None, gid, ref, now))
    for r, result in zip(todo, results, strict=True):
        if isinstance(result, DomainError):
            updates.append(_row_values(tenant_id, r.id, "failed", failure_code(result), None, None, now))
            given_back.append(key_of[r.id])
        else:
            updates.append(_row_values(tenant_id, r.id, "granted", None, result.id, result.ref, now))
            key_updates.append(
                {
                    "b_tenant": tenant_id,
                    "b_key": key_of[r.id],
                    "b_grant_id": result.id,
                    "b_grant_ref": result.ref,
                }
            )
    if postgres:  # one statement each, whatever the chunk's size
        await connection.execute(_PG_ROW_UPDATE, _columns(updates, tenant_id, now))
        if key_updates:
            await connection.execute(_PG_KEY_UPDATE, _columns(key_updates, tenant_id, now))
    else:
        await connection.execute(_row_update_statement(), updates)
        if key_updates:
            await connection.execute(_key_update_statement(), key_updates)
    if given_back:
        await connection.execute(
            delete(BulkGrantKey.__table__).where(
                BulkGrantKey.__table__.c.tenant_id == tenant_id,
                BulkGrantKey.__table__.c.row_key.in_(given_back),
            )
        )
    for r in rows:
        s.expunge(r)  # the rows were updated by Core statements: drop the stale objects
    return [r.id for r in rows]


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
    done = max(total - pending, 0)
    try:
        if job_id is not None:
            await _advance(db, job_id, done)
        while True:
            ids: list[uuid.UUID] = []
            try:
                async with db.transaction() as s:
                    ids = await _grant_chunk(s, kernel, bulk, size, ids)
                    if not ids:
                        break
                    done = max(total - await _pending(s, bulk_id), 0)
                    if job_id is not None:
                        with contextlib.suppress(Conflict, NotFound):
                            await progress.advance(s, job_id, done)
            except DomainError:
                raise
            except Exception as exc:
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
    except Exception as exc:
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


# --------------------------------------------------------------------------------------------- results

_HEADERS = {
    "zh-CN": [
        "行号",
        "姓名",
        "联系方式",
        "商品编码",
        "数量",
        "结果",
        "发放单号",
        "卡券（掩码）",
        "错误",
        "error_code",
    ],
    "en": [
        "row",
        "name",
        "contact",
        "sku",
        "quantity",
        "result",
        "grant ref",
        "codes (masked)",
        "error",
        "error_code",
    ],
}
_STATUS_LABELS = {
    "zh-CN": {
        "invalid": "未发放（数据有误）",
        "pending": "待发放",
        "already_granted": "已发放过",
        "granted": "已发放",
        "failed": "发放失败",
    },
    "en": {
        "invalid": "not granted (bad row)",
        "pending": "pending",
        "already_granted": "granted before",
        "granted": "granted",
        "failed": "failed",
    },
}


def _mask_written(text: str) -> str:
    """A phone or e-mail that could not be read, in the form it was written but with the middle hidden.

    ``138-0013-800`` → ``138-****-800``: every digit but the first 3 and last 4 becomes ``*`` once there
    are 8 or more (it may be a real number with a typo, and the result file promises masked contacts);
    an e-mail keeps its first character and domain. Shorter values cannot be a phone and stay as written.
    """
    if "@" in text:
        user, _, domain = text.partition("@")
        return f"{user[:1]}***@{domain}"
    digits = [i for i, ch in enumerate(text) if ch.isdigit()]
    if len(digits) < 8:
        return text
    hidden = set(digits[3:-4])
    return "".join("*" if i in hidden else ch for i, ch in enumerate(text))


def _contact_shown(row: BulkGrantRow, written: dict[str, str]) -> str:
    """The masked contact; a phone or e-mail that could not be read is shown as written, masked alike."""
    bad = [
        written.get(f, "") for f, p in (("phone", "bad_phone"), ("email", "bad_email")) if p in row.problems
    ]
    bad = [_mask_written(b) for b in bad if b]
    if bad:
        return "; ".join(bad)
    return row.contact_masked


async def results_csv(
    session: AsyncSession, kernel: Kernel, bulk_id: uuid.UUID, locale: str = "zh-CN"
) -> bytes:
    """The per-row result as CSV (UTF-8 with BOM so Excel opens it; contacts and codes masked).

    Values are shown as the file had them (a quantity of ``-2`` stays ``-2``, a date stays a date);
    ``错误``/``error`` holds the row's problems or failure in the same words as the console (Chinese unless
    ``locale`` is English); ``error_code`` the stable codes, for programs.
    """
    lang = "zh-CN" if is_zh(locale) else "en"
    bulk = await get_bulk_grant(session, bulk_id)
    rows = list(
        (
            await session.execute(
                select(BulkGrantRow)
                .where(BulkGrantRow.bulk_grant_id == bulk.id)
                .order_by(BulkGrantRow.row_number)
            )
        ).scalars()
    )
    grant_ids = [r.grant_id for r in rows if r.grant_id is not None]
    codes: dict[uuid.UUID, list[str]] = defaultdict(list)
    for start in range(0, len(grant_ids), _CHUNK):
        part = grant_ids[start : start + _CHUNK]
        found = await session.execute(
            select(GrantItem.grant_id, Code.last4)
            .join(Code, (Code.tenant_id == GrantItem.tenant_id) & (Code.id == GrantItem.code_id))
            .where(GrantItem.grant_id.in_(part))
            .order_by(GrantItem.grant_id, GrantItem.id)
        )
        for grant_id, last4 in found.all():
            codes[grant_id].append(masked(last4))
    cipher = await kernel.keys.cipher(session)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(_HEADERS[lang])
    labels = _STATUS_LABELS[lang]
    separator = "；" if lang == "zh-CN" else "; "
    for r in rows:
        sealed = _open_row(cipher, r)
        name = sealed[0] if sealed else ""
        written: dict[str, str] = dict(sealed[3]) if len(sealed) > 3 else {}
        error_codes = [r.error_code] if r.error_code else [p for p in PROBLEMS if p in (r.problems or [])]
        quantity = written.get("quantity") or (str(r.quantity) if r.quantity else "")
        writer.writerow(
            [
                r.row_number,
                _safe(written.get("name", name)),
                _safe(_contact_shown(r, written)),
                _safe(written.get("sku", r.sku)),
                _safe(quantity),
                labels.get(r.status, r.status),
                r.grant_ref or "",
                "; ".join(codes.get(r.grant_id, [])) if r.grant_id else "",
                separator.join(row_message(c, lang) for c in error_codes),
                ";".join(error_codes),
            ]
        )
    return "\ufeff".encode() + out.getvalue().encode("utf-8")


_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")


def _safe(text: str) -> str:
    """Neutralise spreadsheet formulas in values that came from the uploaded file (CSV injection).

    A plain number (``-2``) is left as written: it cannot be a formula.
    """
    if _NUMBER.fullmatch(text):
        return text
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
