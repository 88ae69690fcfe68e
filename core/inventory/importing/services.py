"""The import and generation services: validate and stage an upload, confirm it, run it; generate codes.

* :func:`create_import` parses and validates an upload, checks every digest against the tenant's codes in
  chunks, and stores a :class:`~core.inventory.models.CodeImport` (status ``validated``) with the report and
  the valid rows encrypted (:mod:`.staging`).
* :func:`confirm_import` queues the import job through the outbox (payload: the import id only) and a job
  progress record; :func:`start_generation` does the same for generated codes.
* :func:`run_import` / :func:`run_generation` are the jobs' bodies (the CLI calls them in-process): ONE
  transaction creates the batch, inserts every sealed code, marks the import ``imported`` and appends the
  ``batch.imported`` / ``batch.generated`` audit event. Progress (done/total) goes to the job record in
  separate short transactions (on PostgreSQL; SQLite has one writer, so there the record moves at start
  and end) and to an optional callback. Any error rolls everything back and the import is marked
  ``failed`` in a separate transaction. A second run of the same import does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import IO, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import structlog
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.catalog.models import Product
from core.catalog.rules import CHARSET_LABELS, CodeRules, charset_ok
from core.catalog.services import find_product
from core.crypto.services import KeyService
from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.ids import new_id, readable_ref
from core.db.maintenance import refresh_statistics
from core.db.results import rowcount
from core.db.session import Database
from core.domains import extensions
from core.errors import Conflict, DomainError, FieldError, NotFound, QuotaExceeded, ValidationFailed
from core.inventory import codegen
from core.inventory.importing import bulk
from core.inventory.importing.parsing import ColumnMapping, open_upload, records
from core.inventory.importing.schemas import (
    BatchFields,
    ConfirmMode,
    GenerationRequest,
    ImportOut,
    ImportOutcome,
    ImportRequest,
)
from core.inventory.importing.staging import Stager, StagingCorrupt, iter_staged
from core.inventory.importing.validation import Candidate, Validator, parse_expiry
from core.inventory.models import Batch, Code, CodeImport
from core.inventory.vault import clean
from core.jobs import outbox, progress
from core.jobs.models import JobRecord
from tenants.registry import get_tenant

log = structlog.get_logger("kaquan.inventory.import")

IMPORT_JOB = "import_codes"
GENERATE_JOB = "generate_codes"
IMPORT_KIND = "codes.import"
GENERATE_KIND = "codes.generate"
#: Rows validated per step (one thread hop and one digest look-up each).
VALIDATE_CHUNK = 5_000
#: Codes sealed and inserted per statement.
INSERT_CHUNK = 5_000

#: The extension point called when a batch is stocked (import or generation), in the stocking transaction,
#: as ``await stocked(session, product, batch_id, now)``: redemption opens stored-value balances here.
BATCH_STOCKED = "inventory.batch_stocked"
#: Code states that count against the plan's ``max_stored_codes``.
LIVE_STATES = ("available", "reserved", "issued")
CODE_PRODUCT_KINDS = ("code", "reusable_code", "stored_value")
PROGRESS_EVERY_SECONDS = 0.5

T = TypeVar("T")
ProgressCallback = Callable[[int, int], Awaitable[None] | None]


# --------------------------------------------------------------------------------------------- helpers


def _invalid(field: str, en: str, zh: str, code: str = "invalid") -> ValidationFailed:
    return ValidationFailed(en, zh, errors=[FieldError(field=field, message=en, code=code)])


def accepts_codes(kind: str, status: str) -> bool:
    """Whether codes can be imported into (or generated for) a product of this kind and status."""
    return kind in CODE_PRODUCT_KINDS and status != "archived"


async def code_product(session: AsyncSession, product_id: uuid.UUID) -> Product:
    """The tenant's product that can hold codes (``code``, ``reusable_code`` or ``stored_value``, not archived)."""
    product = await find_product(session, product_id)
    if product.kind not in CODE_PRODUCT_KINDS:
        raise _invalid(
            "product_id",
            f"Products of kind {product.kind!r} hold no codes; choose a code product",
            f"类型为 {product.kind!r} 的商品不含卡密，请选择卡密类商品",
            "product_not_codes",
        )
    if product.status == "archived":
        raise _invalid("product_id", "The product is archived", "该商品已归档", "product_archived")
    return product


async def tenant_zone(session: AsyncSession) -> ZoneInfo:
    tenant, _plan = await get_tenant(session, require_tenant())
    try:
        return ZoneInfo(tenant.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("Asia/Shanghai")


def _batch_expiry(fields: BatchFields, tz: ZoneInfo, now: dt.datetime) -> dt.datetime | None:
    if not fields.expires_at:
        return None
    try:
        when = parse_expiry(fields.expires_at, tz)
    except ValueError:
        raise _invalid(
            "expires_at",
            "Not a date; use YYYY-MM-DD or an ISO date-time",
            "日期格式错误，请使用 YYYY-MM-DD 或 ISO 日期时间",
            "bad_date",
        ) from None
    if when is not None and when <= now:
        raise _invalid("expires_at", "The batch expiry is in the past", "批次有效期已过", "expired")
    return when


def _batch_fields(fields: BatchFields, product: Product, expires: dt.datetime | None) -> dict[str, Any]:
    return {
        "expires_written": (fields.expires_at or "").strip() or None,
        "supplier": fields.supplier.strip(),
        "unit_cost": fields.unit_cost,
        "currency": fields.currency or product.currency or "CNY",
        "purchase_ref": fields.purchase_ref.strip(),
        "expires_at": expires.isoformat() if expires else None,
        "notes": fields.notes,
    }


async def check_code_quota(session: AsyncSession, adding: int) -> None:
    """Raise :class:`QuotaExceeded` if ``adding`` more live codes would pass the plan's ``max_stored_codes``."""
    _tenant, plan = await get_tenant(session, require_tenant())
    used = int(await session.scalar(select(func.count()).select_from(Code).where(Code.state.in_(LIVE_STATES))) or 0)
    if used + adding > plan.max_stored_codes:
        raise QuotaExceeded(
            f"Your plan {plan.code!r} allows {plan.max_stored_codes} stored codes; {used} are in stock "
            f"and this would add {adding}",
            f"当前套餐 {plan.code!r} 最多存储 {plan.max_stored_codes} 个卡密，库存已有 {used} 个，本次将新增 {adding} 个",
            code="quota_exceeded",
            extra={"quota": "stored_codes", "limit": plan.max_stored_codes, "used": used, "adding": adding},
        )


def import_out(imp: CodeImport) -> ImportOut:
    fields = dict(imp.batch_fields or {})
    source = "generated" if imp.file_format == "generated" else "import"
    return ImportOut(
        id=imp.id,
        status=imp.status,
        product_id=imp.product_id,
        source=source,
        filename=imp.filename,
        file_format=imp.file_format,
        encoding=imp.encoding,
        size_bytes=imp.size_bytes,
        total_rows=imp.total_rows,
        valid_rows=imp.valid_rows,
        batch_fields=fields,
        mapping=dict(imp.mapping or {}),
        report=dict(imp.report or {}),
        job_id=imp.job_id,
        batch_id=imp.batch_id,
        error=imp.error,
        created_at=imp.created_at,
    )


async def get_import(session: AsyncSession, import_id: uuid.UUID) -> CodeImport:
    imp = (await session.execute(select(CodeImport).where(CodeImport.id == import_id))).scalar_one_or_none()
    if imp is None:
        raise NotFound("Import not found", "导入记录不存在", code="import_not_found")
    return imp


# --------------------------------------------------------------------------------------------- validate


def _take(recs: Iterator[Any], validator: Validator, n: int) -> list[Candidate] | None:
    """Pull up to ``n`` records and check them (runs in a worker thread: parsing and HMACs are CPU work)."""
    chunk = []
    for rec in recs:
        chunk.append(rec)
        if len(chunk) >= n:
            break
    if not chunk:
        return None
    return validator.check_chunk(chunk)


async def create_import(
    session: AsyncSession,
    keys: KeyService,
    file: IO[bytes],
    filename: str,
    fields: ImportRequest,
    *,
    max_bytes: int,
) -> CodeImport:
    """Parse, validate and stage an upload; nothing reaches the codes table. Returns the ``validated`` import."""
    tenant_id = require_tenant()
    product = await code_product(session, fields.product_id)
    tz = await tenant_zone(session)
    now = utcnow()
    batch_expires = _batch_expiry(fields, tz, now)
    upload = await asyncio.to_thread(open_upload, file, filename, max_bytes=max_bytes, encoding=fields.encoding)
    columns, recs = await asyncio.to_thread(records, upload, fields.mapping)
    cipher = await keys.cipher(session)
    import_id = new_id()
    validator = Validator(
        cipher,
        code_format=product.code_format,
        tz=tz,
        now=now,
        rules=CodeRules.of(product),
        batch_expires_at=batch_expires,
        batch_expires_written=(fields.expires_at or "").strip() or None,
        near_expiry_days=product.near_expiry_days,
    )
    stager = Stager(cipher, import_id)
    while True:
        candidates = await asyncio.to_thread(_take, recs, validator, VALIDATE_CHUNK)
        if candidates is None:
            break
        # codes stocked before normalisation were digested as written: a row written the same way matches too
        wanted = [c.digest for c in candidates] + [c.legacy_digest for c in candidates if c.legacy_digest]
        for c in validator.drop_existing(candidates, await bulk.held_in_batches(session, tenant_id, wanted)):
            stager.add(c.number, c.pin, c.expires_ts)
    report = validator.report(columns, upload.file_format, upload.encoding, upload.delimiter)
    if report.total_rows == 0:
        raise ValidationFailed(
            "The file has a header but no codes", "文件只有表头，没有任何卡密", code="import_empty"
        )
    imp = CodeImport(
        id=import_id,
        product_id=product.id,
        filename=(filename or "pasted.txt")[-255:],
        size_bytes=upload.size,
        encoding=upload.encoding or "",
        file_format=upload.file_format,
        status="validated",
        batch_fields=_batch_fields(fields, product, batch_expires),
        mapping=msgspec.to_builtins(fields.mapping) if fields.mapping else {},
        report=msgspec.to_builtins(report),
        staged=stager.finish(),
        total_rows=report.total_rows,
        valid_rows=report.valid_rows,
    )
    session.add(imp)
    await session.flush()
    session.expire(imp, ["staged"])  # written; do not keep megabytes of ciphertext on the object
    record(
        session,
        "code_import.validated",
        "code_import",
        imp.id,
        {"product_id": str(product.id), "filename": imp.filename, "total_rows": report.total_rows,
         "valid_rows": report.valid_rows, "problems": report.problem_counts},
    )
    log.info(
        "code_import_validated",
        import_id=str(imp.id),
        file_format=imp.file_format,
        encoding=imp.encoding,
        total_rows=report.total_rows,
        valid_rows=report.valid_rows,
        problems=report.problem_counts,
    )
    return imp


# --------------------------------------------------------------------------------------------- confirm


async def confirm_import(
    session: AsyncSession, import_id: uuid.UUID, mode: ConfirmMode, *, enqueue: bool = True
) -> tuple[CodeImport, JobRecord]:
    """Queue a validated (or failed) import; confirming a queued one again returns its job."""
    imp = await get_import(session, import_id)
    if imp.file_format == "generated":
        raise Conflict("A generation needs no confirmation", "生成任务无需确认", code="import_not_confirmable")
    if imp.status in ("queued", "importing") and imp.job_id is not None:
        return imp, await progress.get(session, imp.job_id)
    if imp.status == "imported":
        raise Conflict("This import is already done", "该批次已导入完成", code="import_already_done")
    invalid = imp.total_rows - imp.valid_rows
    if mode == "all_or_nothing" and invalid:
        raise ValidationFailed(
            f"{invalid} of {imp.total_rows} rows have problems; nothing was imported",
            f"{imp.total_rows} 行中有 {invalid} 行存在问题，未导入任何卡密",
            code="import_has_problems",
            extra={"invalid_rows": invalid, "total_rows": imp.total_rows},
        )
    if imp.valid_rows == 0 or not imp.staged:
        raise ValidationFailed("No row can be imported", "没有可导入的行", code="import_nothing_valid")
    await check_code_quota(session, imp.valid_rows)
    job = await progress.create(session, IMPORT_KIND, total=imp.valid_rows)
    imp.status, imp.job_id, imp.error = "queued", job.id, None
    imp.batch_fields = {**(imp.batch_fields or {}), "mode": mode}
    if enqueue:
        outbox.enqueue(session, IMPORT_JOB, {"import_id": str(imp.id)}, business_key=f"code-import:{imp.id}:{job.id}")
    record(session, "code_import.confirmed", "code_import", imp.id, {"mode": mode, "job_id": str(job.id)})
    await session.flush()
    return imp, job


def _check_generated_fit(product: Product, *, prefix: str, pattern: str) -> None:
    """Generated codes must meet the product's card number rules (charset, and length in canonical form)."""
    rule = CodeRules.of(product).number
    if not charset_ok(codegen.ALPHABET, rule.charset):
        en, zh = CHARSET_LABELS.get(rule.charset, (rule.charset, rule.charset))
        raise _invalid(
            "product_id",
            f"Generated codes use Crockford base32 letters and digits; the product allows only {en}",
            f"生成的卡密包含 Crockford base32 字母和数字，而该商品只允许{zh}",
            "product_rules_mismatch",
        )
    length = len(clean(codegen.generate(pattern, prefix)))
    if not rule.min_length <= length <= rule.max_length:
        raise _invalid(
            "pattern",
            f"Generated codes have {length} characters; the product allows {rule.min_length}–{rule.max_length}",
            f"生成的卡密长度为 {length}，而该商品要求 {rule.min_length}–{rule.max_length} 个字符",
            "product_rules_mismatch",
        )


async def start_generation(
    session: AsyncSession, data: GenerationRequest, *, enqueue: bool = True
) -> tuple[CodeImport, JobRecord]:
    """Queue the generation of ``data.count`` codes into a new batch (source ``generated``)."""
    product = await code_product(session, data.product_id)
    if product.code_format == "number_pin":
        raise _invalid(
            "product_id",
            "Generated codes have no PIN; choose a product with card numbers only",
            "生成的卡密没有密码，请选择只有卡号的商品",
            "product_needs_pin",
        )
    pattern = (data.pattern or codegen.DEFAULT_PATTERN).upper()
    try:
        codegen.validate_pattern((data.prefix + pattern).upper())
    except codegen.PatternError as exc:
        raise _invalid("pattern", str(exc), "格式需至少包含 16 个“#”（80 位随机数），且只能使用 Crockford base32 字符、“-”或空格", "bad_pattern") from None
    _check_generated_fit(product, prefix=data.prefix, pattern=pattern)
    tz = await tenant_zone(session)
    expires = _batch_expiry(data, tz, utcnow())
    await check_code_quota(session, data.count)
    job = await progress.create(session, GENERATE_KIND, total=data.count)
    fields = _batch_fields(data, product, expires)
    fields["generate"] = {"count": data.count, "prefix": data.prefix.upper(), "pattern": pattern}
    imp = CodeImport(
        product_id=product.id,
        filename="",
        file_format="generated",
        status="queued",
        batch_fields=fields,
        total_rows=data.count,
        valid_rows=data.count,
        job_id=job.id,
        report={},
    )
    session.add(imp)
    await session.flush()
    if enqueue:
        outbox.enqueue(session, GENERATE_JOB, {"import_id": str(imp.id)}, business_key=f"code-generation:{imp.id}")
    record(session, "code_generation.requested", "code_import", imp.id, {"count": data.count, "job_id": str(job.id)})
    return imp, job


# --------------------------------------------------------------------------------------------- run


class _Progress:
    """Reports done/total: to the job record in its own short transaction (PostgreSQL), and to a callback."""

    def __init__(self, db: Database, job_id: uuid.UUID | None, total: int, callback: ProgressCallback | None):
        self.db = db
        self.job_id = job_id
        self.total = total
        self.callback = callback
        self.live = db.dialect == "postgresql"
        self._last = 0.0

    async def __call__(self, done: int, *, force: bool = False) -> None:
        if self.callback is not None:
            maybe = self.callback(done, self.total)
            if maybe is not None:
                await maybe
        now = time.monotonic()
        if not (self.live and self.job_id) or (not force and now - self._last < PROGRESS_EVERY_SECONDS):
            return
        self._last = now
        await _advance(self.db, self.job_id, done)


async def _advance(db: Database, job_id: uuid.UUID, done: int, message: str | None = None) -> None:
    try:
        async with db.transaction() as s:
            await progress.advance(s, job_id, done, message=message)
    except (Conflict, NotFound):
        pass  # finished by an earlier run, or gone: progress is informative only


def _failure(exc: BaseException) -> tuple[str, str, str]:
    """(code, en, zh) safe to store and show: domain messages as they are, anything else by its type only."""
    if isinstance(exc, DomainError):
        return exc.code, exc.en, exc.zh
    if isinstance(exc, StagingCorrupt):
        return "import_staging_corrupt", "The staged rows cannot be read; upload the file again", "暂存数据无法读取，请重新上传文件"
    kind = type(exc.orig).__name__ if isinstance(exc, DBAPIError) and exc.orig is not None else type(exc).__name__
    return (
        "import_failed",
        f"The import failed ({kind}); nothing was imported — try again",
        f"导入失败（{kind}），未导入任何卡密，请重试",
    )


async def _mark_failed(db: Database, import_id: uuid.UUID, job_id: uuid.UUID | None, exc: BaseException) -> ImportOutcome:
    code, en, zh = _failure(exc)
    async with db.transaction() as s:
        imp = (await s.execute(select(CodeImport).where(CodeImport.id == import_id))).scalar_one_or_none()
        if imp is not None and imp.status == "queued":
            imp.status, imp.error = "failed", en
            imp.report = {**(imp.report or {}), "error": {"code": code, "en": en, "zh": zh}}
        if job_id is not None:
            with contextlib.suppress(Conflict, NotFound):
                await progress.fail(s, job_id, f"{code}: {en}")
    log.warning(
        "code_import_failed",
        import_id=str(import_id),
        error_code=code,
        error_type=type(exc).__name__,
        exc_info=not isinstance(exc, DomainError | DBAPIError),
    )
    return ImportOutcome(import_id=import_id, status="failed", error_code=code, error_en=en, error_zh=zh)


async def _claim(session: AsyncSession, import_id: uuid.UUID) -> bool:
    """Take the import for this run: ``queued`` → ``importing`` (row-locked; a second run finds nothing)."""
    result = await session.execute(
        update(CodeImport)
        .where(CodeImport.id == import_id, CodeImport.status == "queued")
        .values(status="importing")
        .execution_options(synchronize_session=False)
    )
    if not rowcount(result):
        return False
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        # One import or generation per tenant at a time, so the quota check and the inserts agree.
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended('kaquan-code-import:' || :tid, 0))"),
            {"tid": str(require_tenant())},
        )
    return True


async def _execute(
    db: Database,
    keys: KeyService,
    import_id: uuid.UUID,
    *,
    generated: bool,
    on_progress: ProgressCallback | None,
) -> ImportOutcome:
    async with db.transaction() as s:
        head = (
            await s.execute(
                select(CodeImport.status, CodeImport.job_id, CodeImport.valid_rows, CodeImport.batch_id).where(
                    CodeImport.id == import_id
                )
            )
        ).first()
        if head is None or head.status != "queued":
            status = head.status if head is not None else "missing"
            log.info("code_import_skipped", import_id=str(import_id), status=status)
            return ImportOutcome(import_id=import_id, status="skipped", batch_id=head.batch_id if head else None)
        job_id, total = head.job_id, head.valid_rows
    if job_id is not None:
        await _advance(db, job_id, 0)
    report = _Progress(db, job_id, total, on_progress)
    try:
        async with db.transaction() as s:
            if not await _claim(s, import_id):
                return ImportOutcome(import_id=import_id, status="skipped")
            imp = (await s.execute(select(CodeImport).where(CodeImport.id == import_id))).scalar_one()
            outcome = await _insert_all(s, keys, imp, generated=generated, report=report)
        # Statistics are upkeep: a failure here must not mark a committed batch as failed.
        try:
            await refresh_statistics(db, "codes")
        except (SQLAlchemyError, OSError):
            log.warning("statistics_refresh_failed", import_id=str(import_id), exc_info=True)
        if job_id is not None:
            # The batch is committed; a progress record already finished (a second run) or gone is no error.
            with contextlib.suppress(Conflict, NotFound):
                async with db.transaction() as s:
                    await progress.finish(
                        s,
                        job_id,
                        {"import_id": str(import_id), "batch_id": str(outcome.batch_id), "batch_ref": outcome.batch_ref,
                         "imported": outcome.imported, "skipped_duplicates": outcome.skipped_duplicates},
                    )
        await report(outcome.imported, force=True)
        log.info(
            "code_import_done",
            import_id=str(import_id),
            batch_id=str(outcome.batch_id),
            imported=outcome.imported,
            skipped_duplicates=outcome.skipped_duplicates,
        )
        return outcome
    except Exception as exc:  # boundary: the import job; whatever stops it is recorded on the import
        return await _mark_failed(db, import_id, job_id, exc)


async def _pipelined(
    s: AsyncSession,
    cipher: Any,
    parts: Iterator[list[tuple[str, str | None, int | None]]],
    target: dict[str, Any],
) -> AsyncIterator[tuple[int, int]]:
    """Seal the next chunk in a worker thread while the current one is written: ``(rows sent, rows in)``."""
    expires = target["default_expires_at"]
    part = next(parts, None)
    pending = asyncio.ensure_future(asyncio.to_thread(bulk.seal_rows, cipher, part, expires)) if part else None
    try:
        while pending is not None:
            sealed = await pending
            part = next(parts, None)
            pending = asyncio.ensure_future(asyncio.to_thread(bulk.seal_rows, cipher, part, expires)) if part else None
            got = await bulk.write_codes(s, sealed, **target)
            yield len(sealed.ids), got
    finally:
        if pending is not None:
            pending.cancel()
            # boundary: the abandoned read-ahead task; what it raised no longer matters
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await pending


async def _insert_all(
    s: AsyncSession, keys: KeyService, imp: CodeImport, *, generated: bool, report: _Progress
) -> ImportOutcome:
    fields = dict(imp.batch_fields or {})
    mode = fields.get("mode", "valid_only")
    product = await code_product(s, imp.product_id)
    if not generated and mode == "all_or_nothing" and imp.total_rows != imp.valid_rows:
        raise ValidationFailed(
            "Some rows have problems; nothing was imported", "部分行存在问题，未导入任何卡密", code="import_has_problems"
        )
    await check_code_quota(s, imp.valid_rows)
    cipher = await keys.cipher(s)
    expires = dt.datetime.fromisoformat(fields["expires_at"]) if fields.get("expires_at") else None
    now = utcnow()
    batch = _new_batch(product, fields, generated, expires)
    s.add(batch)
    await s.flush()
    uses_left = product.max_uses if product.kind == "reusable_code" else None
    target = dict(product_id=product.id, batch_id=batch.id, default_expires_at=expires,
                  uses_left=uses_left, now=now)
    if generated:
        inserted = await _write_generated(s, cipher, fields["generate"], target, report)
        skipped = 0
    else:
        attempted, inserted = await _write_staged(s, cipher, imp, mode, target, report)
        skipped = attempted - inserted
    for stocked in extensions(BATCH_STOCKED):  # e.g. redemption opens stored-value balances
        await stocked(s, product, batch.id, now)
    batch.code_count = inserted
    total_cost = batch.unit_cost * inserted
    imp.status, imp.batch_id, imp.error, imp.staged = "imported", batch.id, None, None
    imp.report = {**(imp.report or {}), "imported": inserted, "skipped_duplicates": skipped, "batch_ref": batch.ref}
    record(
        s,
        "batch.generated" if generated else "batch.imported",
        "batch",
        batch.id,
        {
            "batch_ref": batch.ref,
            "product_id": str(product.id),
            "import_id": str(imp.id),
            "codes": inserted,
            "skipped_duplicates": skipped,
            "unit_cost": batch.unit_cost,
            "total_cost": total_cost,
            "currency": batch.currency,
            "supplier": batch.supplier,
            "purchase_ref": batch.purchase_ref,
            "mode": None if generated else mode,
            "opening_balance": product.face_value if product.kind == "stored_value" else None,
        },
    )
    await s.flush()
    return ImportOutcome(
        import_id=imp.id, status="imported", batch_id=batch.id, batch_ref=batch.ref,
        imported=inserted, skipped_duplicates=skipped,
    )


def _new_batch(
    product: Product, fields: dict[str, Any], generated: bool, expires: dt.datetime | None
) -> Batch:
    """The batch the import's codes go into, from the fields given at upload."""
    return Batch(
        ref=readable_ref("B"),
        product_id=product.id,
        source="generated" if generated else "import",
        supplier=fields.get("supplier", ""),
        unit_cost=int(fields.get("unit_cost", 0)),
        currency=fields.get("currency") or product.currency,
        purchase_ref=fields.get("purchase_ref", ""),
        expires_at=expires,
        notes=fields.get("notes", ""),
        code_count=0,
    )


async def _write_generated(
    s: AsyncSession, cipher: Any, spec: dict[str, Any], target: dict[str, Any], report: _Progress
) -> int:
    """Generate and write ``spec["count"]`` new codes; the number written (always that count)."""
    inserted = 0
    wanted = int(spec["count"])
    codes = codegen.generate_unique(10**9, spec["pattern"], spec["prefix"])  # drawn as needed
    while inserted < wanted:  # a clash with a held code is dropped and drawn again: duplicates are impossible
        missing = wanted - inserted
        parts: Iterator[list[tuple[str, str | None, int | None]]] = (
            [(next(codes), None, None) for _ in range(min(INSERT_CHUNK, missing - start))]
            for start in range(0, missing, INSERT_CHUNK)
        )
        async for _sent, got in _pipelined(s, cipher, parts, target):
            inserted += got
            await report(inserted)
    return inserted


async def _write_staged(
    s: AsyncSession, cipher: Any, imp: CodeImport, mode: str, target: dict[str, Any], report: _Progress
) -> tuple[int, int]:
    """Write the staged rows: (rows attempted, codes written; the rest were already in stock).

    ``all_or_nothing`` refuses (``import_duplicates_appeared``) when a code arrived in stock since validation.
    """
    if not imp.staged:
        raise StagingCorrupt("nothing staged")
    inserted = attempted = 0
    parts = (chunk[start : start + INSERT_CHUNK] for chunk in iter_staged(cipher, imp.id, imp.staged)
             for start in range(0, len(chunk), INSERT_CHUNK))
    async for sent, got in _pipelined(s, cipher, parts, target):
        attempted += sent
        inserted += got
        if got < sent and mode == "all_or_nothing":
            raise Conflict(
                "Some codes were added to your stock since validation; nothing was imported",
                "自校验以来部分卡密已入库，本次未导入任何卡密",
                code="import_duplicates_appeared",
            )
        await report(inserted)
    return attempted, inserted


async def run_import(
    db: Database, keys: KeyService, import_id: uuid.UUID, *, on_progress: ProgressCallback | None = None
) -> ImportOutcome:
    """Import a confirmed upload in one transaction (the ``import_codes`` job's body; idempotent)."""
    return await _execute(db, keys, import_id, generated=False, on_progress=on_progress)


async def run_generation(
    db: Database, keys: KeyService, import_id: uuid.UUID, *, on_progress: ProgressCallback | None = None
) -> ImportOutcome:
    """Generate and store the requested codes in one transaction (the ``generate_codes`` job's body)."""
    return await _execute(db, keys, import_id, generated=True, on_progress=on_progress)


def to_request(values: dict[str, Any], cls: type[T]) -> T:
    """Form, query or CLI values → a request Struct (strings coerced); empty values count as absent."""
    present = {k: v for k, v in values.items() if v not in ("", None)}
    try:
        return msgspec.convert(present, cls, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        field = message.rsplit("`$.", 1)[1].rstrip("`").strip() if "`$." in message else "body"
        if "missing required field `" in message:
            field = message.split("`")[1]
        raise ValidationFailed(
            "Some fields are invalid", "部分字段无效", errors=[FieldError(field=field, message=message)]
        ) from None


def parse_mapping(raw: str | bytes | dict[str, Any] | None) -> ColumnMapping | None:
    """A column mapping from JSON text or a dict (form field, query parameter, CLI option)."""
    if raw is None or raw == "" or raw == b"":
        return None
    try:
        if isinstance(raw, dict):
            return msgspec.convert(raw, ColumnMapping)
        return msgspec.json.decode(raw, type=ColumnMapping)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _invalid(
            "mapping",
            f"Not a column mapping: {exc}",
            "列映射格式错误，应为 JSON，例如 {\"number\": \"卡号\", \"pin\": \"卡密\"}",
            "bad_mapping",
        ) from None
