"""Tenant console import wizard and code generation.

Steps: upload (a file or pasted text, with the product and the batch's supplier, unit cost, purchase
reference, expiry and notes) → column mapping (detected from the file by ``/console/imports/preview`` as
soon as a file is chosen, changeable) → validation report (totals, counts per problem, the first problem
rows, codes masked) → confirm (valid rows only, or nothing if any row has a problem) → a progress bar
polling ``/console/imports/{id}/progress`` → the finished batch. Generation (count, prefix, pattern) queues
the same kind of job and shows the same progress bar.

Parsing, validation, staging, confirmation and the job are :mod:`core.inventory.importing.services`; the
uploaded file is never kept and no plaintext code is ever put in a page or a JSON answer.
"""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from typing import IO, Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import FormMultiDict, UploadFile
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect

from admin_ui.catalog_pages import bad_fields
from admin_ui.console_pages import shell
from admin_ui.forms import FormInvalid, FormProblem, problem_of, read_form, values
from admin_ui.i18n import N_
from admin_ui.labels import JOB_STATUS_LABELS
from admin_ui.money import AmountInvalid, yuan_to_fen
from admin_ui.rendering import flash, locale_of, render, translator
from core.catalog.services import get_product
from core.db.types import DbSession
from core.errors import DomainError, ValidationFailed
from core.http.uploads import UPLOAD_CEILING, check_declared_length
from core.inventory.importing import services
from core.inventory.importing.parsing import FIELDS, ColumnMapping, open_upload, records
from core.inventory.importing.schemas import GenerationRequest, ImportRequest
from core.inventory.models import CodeImport
from core.inventory.queries import importable_products
from core.jobs import progress
from tenants.guards import provide_db, require_permission

BATCH_FIELDS = ("product_id", "supplier", "unit_cost", "purchase_ref", "expires_at", "notes", "encoding")
MAP_FIELDS = ("map_header", "map_number", "map_pin", "map_expires_at")
GENERATE_FIELDS = (
    "product_id",
    "count",
    "prefix",
    "pattern",
    "supplier",
    "unit_cost",
    "purchase_ref",
    "expires_at",
    "notes",
)
ENCODINGS = ("", "utf-8", "gb18030", "utf-16", "big5")
PREVIEW_COLUMNS = 8
"""Columns offered in the mapping selects before the file has been looked at."""
SHOWN_PROBLEMS = 50
COST_MESSAGE = N_("Enter an amount in yuan with at most two decimals, e.g. 12.50.")
FILE_MESSAGE = N_("Choose a file or paste the codes.")
MAPPING_MESSAGE = N_("Choose the column of each field, or leave all three on auto-detect.")
GENERIC_INVALID = "Some fields are invalid"
"""What :func:`core.inventory.importing.services.to_request` says of a value it cannot convert."""
_POSITION = re.compile(r"^column (\d+)$")
UuidQuery = Annotated[uuid.UUID | None, Parameter(required=False)]


def _failure(exc: Exception, request: Request[Any, Any, Any]) -> tuple[FormProblem, int]:
    """The message for the form; a request field the services call invalid is named by its label."""
    status = exc.status if isinstance(exc, DomainError) else 422
    if isinstance(exc, ValidationFailed) and exc.code == "validation_failed" and exc.en == GENERIC_INVALID:
        field = exc.errors[0].field if exc.errors else None
        return problem_of(FormInvalid(field), translator(request), locale_of(request)), status
    return problem_of(exc, translator(request), locale_of(request)), status


def _cost(form: dict[str, str]) -> str:
    """The unit cost in fen (as the request's text) from the yuan typed in the form."""
    if not form["unit_cost"]:
        return ""
    try:
        return str(yuan_to_fen(form["unit_cost"]))
    except AmountInvalid:
        raise FormInvalid("unit_cost", COST_MESSAGE) from None


def mapping_of(form: dict[str, str]) -> ColumnMapping | None:
    """The column mapping chosen in the form: ``""`` is auto-detect, ``"-"`` no such column, else an index."""
    picked: dict[str, int | None] = {}
    explicit = False
    for name in FIELDS:
        raw = form[f"map_{name}"]
        if raw == "":
            picked[name] = None
            continue
        explicit = True
        if raw == "-":
            picked[name] = None
        elif raw.isdigit() and int(raw) < 1000:
            picked[name] = int(raw)
        else:
            raise FormInvalid(f"map_{name}", MAPPING_MESSAGE)
    header = {"yes": True, "no": False}.get(form["map_header"])
    if explicit and picked["number"] is None:
        raise FormInvalid("map_number", MAPPING_MESSAGE)
    if not explicit and header is None:
        return None
    return ColumnMapping(**(picked if explicit else {}), header=header)


def _source(raw: FormMultiDict) -> tuple[IO[bytes], str]:
    """The uploaded file, else the pasted text; :class:`FormInvalid` when there is neither."""
    upload = raw.get("file")
    if isinstance(upload, UploadFile) and upload.filename:
        return upload.file, upload.filename
    text = raw.get("text")
    if isinstance(text, str) and text.strip():
        return io.BytesIO(text.encode("utf-8")), ""
    raise FormInvalid("file", FILE_MESSAGE)




def _column_name(value: str | None, t: Any) -> str | None:
    """A mapped column as the report names it: its header, or ``column 2`` (said in the user's language)."""
    match = _POSITION.match(value or "")
    if match:
        return str(t.gettext("Column %(n)s") % {"n": match.group(1)})
    return value


def _report_view(imp: CodeImport, t: Any) -> dict[str, Any]:
    report = dict(imp.report or {})
    problems = list(report.get("problems") or [])
    return {
        "report": report,
        "problems": problems[:SHOWN_PROBLEMS],
        "more_problems": max(0, int(report.get("invalid_rows") or 0) - len(problems[:SHOWN_PROBLEMS])),
        "counts": dict(report.get("problem_counts") or {}),
        "warnings": dict(report.get("warnings") or {}),
        "columns": {k: _column_name(v, t) for k, v in (report.get("columns") or {}).items()},
        "error": report.get("error"),
    }


class ImportsController(Controller):
    path = "/imports"
    guards = [require_permission("inventory.read")]
    dependencies = {"db": Provide(provide_db)}

    async def _upload_page(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        form: dict[str, str],
        *,
        problem: FormProblem | None = None,
        bad: set[str] | None = None,
        status: int = 200,
    ) -> Response[str]:
        ctx = await shell(request, db)
        ctx.update(
            form=form,
            products=await importable_products(db),
            problem=problem,
            bad=bad or set(),
            encodings=ENCODINGS,
            preview_columns=PREVIEW_COLUMNS,
            max_mb=request.app.state.kernel.settings.max_import_bytes // (1024 * 1024),
        )
        return render(request, "console/import_new.html", ctx, status=status)

    @get("/new", guards=[require_permission("inventory.manage")])
    async def new_import(
        self, request: Request[Any, Any, Any], db: DbSession, product_id: UuidQuery = None
    ) -> Response[str]:
        """Step 1 and 2: the file (or pasted codes), the batch fields and the column mapping."""
        form = {f: "" for f in (*BATCH_FIELDS, *MAP_FIELDS)}
        form["product_id"] = str(product_id) if product_id else ""
        form["map_header"] = "auto"
        return await self._upload_page(request, db, form)

    @post(
        "/",
        status_code=303,
        guards=[require_permission("inventory.manage")],
        request_max_body_size=UPLOAD_CEILING,
    )
    async def upload(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        """Parse and validate the upload (nothing is stored as stock yet), then show the report."""
        limit: int = request.app.state.kernel.settings.max_import_bytes
        form: dict[str, str] = {f: "" for f in (*BATCH_FIELDS, *MAP_FIELDS)}
        try:
            check_declared_length(request, limit)
            raw = await read_form(request)
            form = values(raw, *BATCH_FIELDS, *MAP_FIELDS)
            file, filename = _source(raw)
            batch = {f: form[f] for f in BATCH_FIELDS}
            fields = services.to_request({**batch, "unit_cost": _cost(form)}, ImportRequest)
            fields.mapping = mapping_of(form)
            imp = await services.create_import(
                db, request.app.state.kernel.keys, file, filename, fields, max_bytes=limit
            )
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._upload_page(
                request, db, form, problem=problem, bad=bad_fields(exc), status=status
            )
        return Redirect(f"/console/imports/{imp.id}", status_code=303)

    @post(
        "/preview",
        status_code=200,
        guards=[require_permission("inventory.manage")],
        request_max_body_size=UPLOAD_CEILING,
    )
    async def preview(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        """The columns of a chosen file and the mapping detected in them (JSON; never a cell's content)."""
        t = translator(request)
        limit: int = request.app.state.kernel.settings.max_import_bytes
        try:
            check_declared_length(request, limit)
            raw = await read_form(request)
            file, filename = _source(raw)
            encoding = values(raw, "encoding")["encoding"] or None
            upload = await asyncio.to_thread(open_upload, file, filename, max_bytes=limit, encoding=encoding)
            columns, _rows = await asyncio.to_thread(records, upload, None)
        except (DomainError, FormInvalid) as exc:
            problem, status = _failure(exc, request)
            return Response(
                {"error": problem.message}, status_code=status, headers={"Cache-Control": "no-store"}
            )
        used = [i for i in (columns.number, columns.pin, columns.expires_at) if i is not None]
        count = len(columns.header) if columns.has_header else max(used) + 1
        labels = []
        for i in range(max(count, 1)):
            label = t.gettext("Column %(n)s") % {"n": i + 1}
            if columns.has_header and i < len(columns.header) and columns.header[i]:
                label += f" · {columns.header[i][:40]}"
            labels.append(label)
        body = {
            "columns": labels,
            "has_header": columns.has_header,
            "number": columns.number,
            "pin": columns.pin,
            "expires_at": columns.expires_at,
            "file_format": upload.file_format,
            "encoding": upload.encoding,
        }
        return Response(body, headers={"Cache-Control": "no-store"})

    @get("/{import_id:uuid}")
    async def show(
        self, request: Request[Any, Any, Any], db: DbSession, import_id: uuid.UUID
    ) -> Response[Any]:
        """Step 3–5: the validation report and the confirm form; then the progress bar; then the batch."""
        imp = await services.get_import(db, import_id)
        if imp.status == "imported" and imp.batch_id is not None:
            t = translator(request)
            report = imp.report or {}
            message = t.gettext("Batch %(ref)s: %(num)s codes imported.") % {
                "ref": report.get("batch_ref", ""),
                "num": report.get("imported", imp.valid_rows),
            }
            if report.get("skipped_duplicates"):
                message += " " + t.gettext("%(num)s duplicates were skipped.") % {
                    "num": report["skipped_duplicates"]
                }
            flash(request, message)
            return Redirect(f"/console/batches/{imp.batch_id}", status_code=303)
        return await self._report_page(request, db, imp)

    async def _report_page(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        imp: CodeImport,
        *,
        problem: FormProblem | None = None,
        status: int = 200,
    ) -> Response[str]:
        ctx = await shell(request, db)
        job = progress.job_out(await progress.get(db, imp.job_id)) if imp.job_id else None
        ctx.update(
            imp=services.import_out(imp),
            product=await get_product(db, imp.product_id),
            job=job,
            problem=problem,
            **_report_view(imp, translator(request)),
        )
        return render(request, "console/import_report.html", ctx, status=status)

    @post("/{import_id:uuid}/confirm", status_code=303, guards=[require_permission("inventory.manage")])
    async def confirm(
        self, request: Request[Any, Any, Any], db: DbSession, import_id: uuid.UUID
    ) -> Response[Any]:
        """Queue the import of the valid rows (or of everything, refused if any row has a problem)."""
        mode = values(await read_form(request), "mode")["mode"] or "valid_only"
        try:
            if mode not in ("valid_only", "all_or_nothing"):
                raise FormInvalid("mode")
            await services.confirm_import(db, import_id, mode)  # type: ignore[arg-type]
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            imp = await services.get_import(db, import_id)
            return await self._report_page(request, db, imp, problem=problem, status=status)
        return Redirect(f"/console/imports/{import_id}", status_code=303)

    @get("/{import_id:uuid}/progress")
    async def import_progress(
        self, request: Request[Any, Any, Any], db: DbSession, import_id: uuid.UUID
    ) -> Response[Any]:
        """The import's job progress as JSON for the progress bar (polled by console.js)."""
        imp = await services.get_import(db, import_id)
        stale_after = progress.waiting_after(request.app.state.kernel.settings)
        job = (
            progress.job_out(await progress.get(db, imp.job_id), stale_after=stale_after)
            if imp.job_id
            else None
        )
        t = translator(request)
        error = (imp.report or {}).get("error") or {}
        finished = imp.status in ("imported", "failed")
        waiting = not finished and job is not None and job.state == "waiting"
        done, total = (job.done, job.total) if job else (0, imp.valid_rows)
        percent = job.percent if job else 0.0
        if imp.status == "imported":  # the batch is committed; the job record may be a moment behind
            done = total = int((imp.report or {}).get("imported", imp.valid_rows))
            percent = 100.0
        body = {
            "status": imp.status,
            "job_status": job.status if job else None,
            "label": t.gettext(
                JOB_STATUS_LABELS["waiting"] if waiting else JOB_LABELS.get(imp.status, imp.status)
            ),
            "waiting": waiting,
            "done": done,
            "total": total,
            "percent": percent,
            "finished": finished,
            "error": (error.get("zh") if locale_of(request).startswith("zh") else error.get("en"))
            or imp.error,
            "next": f"/console/imports/{imp.id}" if finished else None,
        }
        return Response(body, headers={"Cache-Control": "no-store"})

    async def _generate_page(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        form: dict[str, str],
        *,
        problem: FormProblem | None = None,
        bad: set[str] | None = None,
        status: int = 200,
    ) -> Response[str]:
        ctx = await shell(request, db)
        ctx.update(
            form=form,
            products=await importable_products(db, number_only=True),
            problem=problem,
            bad=bad or set(),
        )
        return render(request, "console/generate.html", ctx, status=status)

    @get("/generate", guards=[require_permission("inventory.manage")])
    async def generate_form(
        self, request: Request[Any, Any, Any], db: DbSession, product_id: UuidQuery = None
    ) -> Response[str]:
        """Generate your own codes (Crockford base32 with a check symbol) into a new batch."""
        form = {f: "" for f in GENERATE_FIELDS}
        form["product_id"] = str(product_id) if product_id else ""
        form["count"] = "1000"
        return await self._generate_page(request, db, form)

    @post("/generate", status_code=303, guards=[require_permission("inventory.manage")])
    async def generate(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        form = values(await read_form(request), *GENERATE_FIELDS)
        try:
            data = services.to_request({**form, "unit_cost": _cost(form)}, GenerationRequest)
            imp, _job = await services.start_generation(db, data)
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._generate_page(
                request, db, form, problem=problem, bad=bad_fields(exc), status=status
            )
        return Redirect(f"/console/imports/{imp.id}", status_code=303)


JOB_LABELS: dict[str, str] = {
    "validated": N_("Waiting for your confirmation"),
    "queued": N_("Queued"),
    "importing": N_("Importing"),
    "imported": N_("Finished"),
    "failed": N_("Failed"),
}
