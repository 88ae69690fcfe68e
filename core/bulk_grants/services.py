"""Bulk grants: validate a recipient file, confirm it, grant it in chunks in a job, give back a result file.

* :func:`create_bulk_grant` reads the upload (:mod:`.parsing`), checks every SKU against the catalog, finds
  duplicate rows and rows already granted, totals the units per product against available stock, and
  stores a ``validated`` :class:`~core.bulk_grants.models.BulkGrant` with one row record per data row
  (contact encrypted under the tenant's data key, masked copy for display).
* :func:`confirm_bulk_grant` creates a job progress record and queues the ``run_bulk_grant`` job through the
  outbox (payload: the bulk grant id only).
* :func:`core.bulk_grants.run.run_bulk_grant` is the job's body: the ``pending`` rows are granted in
  chunks, one transaction each, set-based through :func:`core.grants.services.grant_many`; a row's own
  error is recorded on the row while the chunk's other rows are granted.
* :func:`core.bulk_grants.results.results_csv` renders the per-row result (UTF-8 with BOM, codes masked):
  the cells as written, and each problem in the console's words next to its stable code.

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
import datetime as dt
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import IO, Any

import msgspec
import structlog
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.bulk_grants.models import BulkGrant, BulkGrantKey, BulkGrantRow
from core.bulk_grants.parsing import PROBLEMS, RecipientRow, mask_contact, read_rows
from core.bulk_grants.schemas import BulkGrantFields, BulkGrantOut, ProductTotal
from core.catalog.models import Product
from core.crypto.envelope import TenantCipher
from core.db.base import utcnow
from core.db.ids import new_id
from core.db.paging import keyset_page
from core.errors import Conflict, NotFound, ValidationFailed
from core.inventory.allocation import count_available
from core.inventory.importing.parsing import open_upload
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
#: Values per ``IN (…)`` list and rows per multi-row insert.
IN_CHUNK = 500


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


def open_row(cipher: TenantCipher, row: BulkGrantRow) -> list[Any]:
    """A stored row's sealed values: [name, phone, e-mail, cells as written] (empty when none were kept)."""
    if row.contact_secret is None:
        return []
    return list(
        msgspec.msgpack.decode(
            cipher.decrypt(row.contact_secret, aad=_row_aad(row.bulk_grant_id, row.row_number))
        )
    )


def open_contact(cipher: TenantCipher, row: BulkGrantRow) -> tuple[str, str | None, str | None]:
    """(name, phone, e-mail) of a stored row."""
    sealed = open_row(cipher, row)
    if not sealed:
        return "", None, None
    return sealed[0], sealed[1], sealed[2]


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


def dialect_insert(session: AsyncSession) -> Any:
    """The ``insert`` of the session's dialect (with ``ON CONFLICT``): PostgreSQL's or SQLite's."""
    dialect = session.bind.dialect.name if session.bind is not None else ""
    if dialect not in ("postgresql", "sqlite"):
        raise RuntimeError(f"bulk grants do not support {dialect!r}")
    return pg_insert if dialect == "postgresql" else sqlite_insert


# --------------------------------------------------------------------------------------------- validate


async def _products(session: AsyncSession, skus: set[str]) -> dict[str, Product]:
    found: dict[str, Product] = {}
    ordered = sorted(skus)
    for start in range(0, len(ordered), IN_CHUNK):
        part = ordered[start : start + IN_CHUNK]
        for p in (await session.execute(select(Product).where(Product.sku.in_(part)))).scalars():
            found[p.sku] = p
    return found


async def granted_keys(
    session: AsyncSession, keys: list[str]
) -> dict[str, tuple[uuid.UUID | None, str | None]]:
    """Keys already in the ledger → (grant id, grant ref) of the grant made for them."""
    held: dict[str, tuple[uuid.UUID | None, str | None]] = {}
    for start in range(0, len(keys), IN_CHUNK):
        part = keys[start : start + IN_CHUNK]
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
    upload = await asyncio.to_thread(open_upload, file, filename, max_bytes=max_bytes)
    columns, rows = await asyncio.to_thread(read_rows, upload, MAX_ROWS)
    campaign = fields.campaign_ref.strip()
    products = await _products(session, {r.sku for r in rows if r.sku})
    _mark_problems(rows, products)
    cipher = await kernel.keys.cipher(session)
    bulk_id = new_id()
    keys: dict[int, str] = {}
    for r in rows:
        if not r.problems and r.contact:
            keys[r.row] = row_key(cipher, campaign, r.contact, products[r.sku].id)
    granted = await granted_keys(session, list(keys.values()))
    now = utcnow()
    tally = _Tally()
    values: list[dict[str, Any]] = []
    for r in rows:
        key = keys.get(r.row)
        status = tally.add(r, key, granted)
        earlier = granted.get(key) if status == "already_granted" and key else None
        values.append(
            _row_record(bulk_id, cipher, r, products.get(r.sku), key, status, earlier, now)
        )
    totals = await _product_totals(session, products, tally.per_product)
    report = {
        "columns": columns.describe(),
        "file_format": upload.file_format,
        "encoding": upload.encoding,
        "total_rows": len(rows),
        "valid_rows": tally.valid,
        "invalid_rows": len(rows) - tally.valid - tally.already,
        "already_granted": tally.already,
        "problem_counts": {p: tally.problem_counts[p] for p in PROBLEMS if tally.problem_counts[p]},
        "problems": tally.listed,
        "products": msgspec.to_builtins(totals),
        "short_of_stock": any(t.shortfall for t in totals),
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
        valid_rows=tally.valid,
        already_granted=tally.already,
        user_id=user_id,
        client_id=client_id,
    )
    session.add(bulk)
    await session.flush()
    for start in range(0, len(values), IN_CHUNK):
        await session.execute(dialect_insert(session)(BulkGrantRow), values[start : start + IN_CHUNK])
    facts = {"total_rows": len(rows), "valid_rows": tally.valid, "already_granted": tally.already}
    audit = {
        "filename": bulk.filename,
        "campaign_ref": campaign,
        **facts,
        "problems": report["problem_counts"],
    }
    record(session, "bulk_grant.validated", "bulk_grant", bulk.id, audit)
    log.info("bulk_grant_validated", bulk_grant_id=str(bulk.id), **facts, problems=report["problem_counts"])
    return bulk


def _mark_problems(rows: list[RecipientRow], products: dict[str, Product]) -> None:
    """Add the rows' catalog problems (unknown or inactive SKU) and a second line for the same person and
    product (``duplicate_in_file``) to the cell problems the parser found."""
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


@dataclass
class _Tally:
    """The validation report's counts, built row by row."""

    valid: int = 0
    already: int = 0
    problem_counts: Counter[str] = field(default_factory=Counter)
    listed: list[dict[str, Any]] = field(default_factory=list)  # the first REPORT_PROBLEMS rows with problems
    per_product: dict[str, list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )  # rows, units

    def add(
        self, r: RecipientRow, key: str | None, granted: dict[str, tuple[uuid.UUID | None, str | None]]
    ) -> str:
        """Count the row; its status: ``invalid``, ``already_granted`` (key in the ledger) or ``pending``."""
        if r.problems:
            self.problem_counts.update(r.problems)
            if len(self.listed) < REPORT_PROBLEMS:
                self.listed.append({"row": r.row, "codes": [p for p in PROBLEMS if p in r.problems]})
            return "invalid"
        if key in granted:
            self.already += 1
            return "already_granted"
        self.valid += 1
        totals = self.per_product[r.sku]
        totals[0] += 1
        totals[1] += r.quantity
        return "pending"


def _row_record(
    bulk_id: uuid.UUID,
    cipher: TenantCipher,
    r: RecipientRow,
    product: Product | None,
    key: str | None,
    status: str,
    earlier: tuple[uuid.UUID | None, str | None] | None,
    now: dt.datetime,
) -> dict[str, Any]:
    """The stored row (contact sealed, a masked copy for display; the grant of a row granted before)."""
    return {
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


async def _product_totals(
    session: AsyncSession, products: dict[str, Product], per_product: dict[str, list[int]]
) -> list[ProductTotal]:
    """Per product of the pending rows: rows, units, available stock and the shortfall (by SKU)."""
    totals: list[ProductTotal] = []
    for sku, (n_rows, quantity) in sorted(per_product.items()):
        product = products[sku]
        available = await count_available(session, product.id)
        totals.append(
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
    return totals


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
