"""Tenant console bulk grants (员工福利批量发放): upload → report → confirm → progress bar → result file.

``/console/bulk-grants`` lists recent bulk grants and holds the upload form (file, campaign reference,
delivery channel). The report page shows the counts, the problems per row, the units per product against
stock, and the confirm button; once confirmed it shows a progress bar polling
``/console/bulk-grants/{id}/progress``; when done, the counts and the per-row result download. Everything is
:mod:`core.bulk_grants.services`; contacts are shown masked and codes never appear.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import Provide
from litestar.response import Redirect

from admin_ui.console_pages import shell
from admin_ui.forms import FormInvalid, FormProblem, problem_of, read_form, values
from admin_ui.i18n import N_
from admin_ui.labels import JOB_STATUS_LABELS
from admin_ui.rendering import flash, locale_of, render, translator
from core.bulk_grants import services
from core.bulk_grants.messages import row_messages
from core.bulk_grants.models import BulkGrant
from core.bulk_grants.results import results_csv
from core.bulk_grants.schemas import BulkGrantFields
from core.db.types import DbSession
from core.errors import DomainError
from core.http.uploads import UPLOAD_CEILING, check_declared_length
from core.inventory.importing.services import to_request
from core.jobs import progress
from tenants.guards import principal_of, provide_db, require_permission

FIELDS = ("campaign_ref", "channel")
SHOWN_PROBLEMS = 100
FILE_MESSAGE = N_("Choose the recipient file (CSV or Excel).")

STATUS_LABELS: dict[str, str] = {
    "validated": N_("Waiting for your confirmation"),
    "queued": N_("Queued"),
    "running": N_("Granting"),
    "done": N_("Finished"),
    "failed": N_("Stopped"),
}
CHANNEL_LABELS: dict[str, str] = {
    "": N_("By the contact in each row (SMS first)"),
    "sms": N_("SMS"),
    "email": N_("E-mail"),
    "none": N_("Do not send (codes stay in the members' accounts)"),
}
COLUMN_LABELS: dict[str, str] = {
    "name": N_("Name"),
    "phone": N_("Phone"),
    "email": N_("E-mail"),
    "sku": N_("Product code"),
    "quantity": N_("Quantity"),
}


def _problem(exc: Exception, request: Request[Any, Any, Any]) -> tuple[FormProblem, int]:
    status = exc.status if isinstance(exc, DomainError) else 422
    return problem_of(exc, translator(request), locale_of(request)), status


class BulkGrantsController(Controller):
    path = "/bulk-grants"
    guards = [require_permission("grants.manage")]
    dependencies = {"db": Provide(provide_db)}

    async def _index(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        form: dict[str, str],
        *,
        problem: FormProblem | None = None,
        status: int = 200,
    ) -> Response[str]:
        ctx = await shell(request, db)
        rows, _next = await services.list_bulk_grants(db, limit=30)
        ctx.update(
            form=form,
            problem=problem,
            bulk_grants=[services.bulk_out(b) for b in rows],
            status_labels=STATUS_LABELS,
            channel_labels=CHANNEL_LABELS,
            max_mb=request.app.state.kernel.settings.max_import_bytes // (1024 * 1024),
        )
        return render(request, "console/bulk_grants/index.html", ctx, status=status)

    @get("/")
    async def index(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        """Recent bulk grants and the upload form."""
        return await self._index(request, db, {f: "" for f in FIELDS})

    @post("/", status_code=303, request_max_body_size=UPLOAD_CEILING)
    async def upload(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        """Read and validate the recipient file (nothing is granted yet), then show the report."""
        kernel = request.app.state.kernel
        limit: int = kernel.settings.max_import_bytes
        form = {f: "" for f in FIELDS}
        try:
            check_declared_length(request, limit, action="upload")
            raw = await read_form(request)
            form = values(raw, *FIELDS)
            upload = raw.get("file")
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise FormInvalid("file", FILE_MESSAGE)
            fields = to_request(form, BulkGrantFields)
            principal = principal_of(request)
            bulk = await services.create_bulk_grant(
                db,
                kernel,
                upload.file,
                upload.filename,
                fields,
                max_bytes=limit,
                user_id=uuid.UUID(principal.subject_id) if principal else None,
            )
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            problem, status = _problem(exc, request)
            return await self._index(request, db, form, problem=problem, status=status)
        return Redirect(f"/console/bulk-grants/{bulk.id}", status_code=303)

    async def _show(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        bulk: BulkGrant,
        *,
        problem: FormProblem | None = None,
        status: int = 200,
    ) -> Response[str]:
        ctx = await shell(request, db)
        out = services.bulk_out(bulk)
        report = out.report
        problems = list(report.get("problems") or [])
        job = progress.job_out(await progress.get(db, bulk.job_id)) if bulk.job_id else None
        ctx.update(
            bulk=out,
            report=report,
            job=job,
            problem=problem,
            problems=problems[:SHOWN_PROBLEMS],
            more_problems=max(0, int(report.get("invalid_rows") or 0) - len(problems[:SHOWN_PROBLEMS])),
            counts=dict(report.get("problem_counts") or {}),
            columns=dict(report.get("columns") or {}),
            problem_labels=row_messages(locale_of(request)),  # the same words as the result file
            status_labels=STATUS_LABELS,
            channel_labels=CHANNEL_LABELS,
            column_labels=COLUMN_LABELS,
        )
        return render(request, "console/bulk_grants/show.html", ctx, status=status)

    @get("/{bulk_id:uuid}")
    async def show(self, request: Request[Any, Any, Any], db: DbSession, bulk_id: uuid.UUID) -> Response[str]:
        """The report and confirm button; then the progress bar; then the counts and the result download."""
        return await self._show(request, db, await services.get_bulk_grant(db, bulk_id))

    @post("/{bulk_id:uuid}/confirm", status_code=303)
    async def confirm(
        self, request: Request[Any, Any, Any], db: DbSession, bulk_id: uuid.UUID
    ) -> Response[Any]:
        """Queue the grant job for the rows that can be granted."""
        try:
            await services.confirm_bulk_grant(db, bulk_id)
        except DomainError as exc:
            await db.rollback()
            problem, status = _problem(exc, request)
            return await self._show(
                request, db, await services.get_bulk_grant(db, bulk_id), problem=problem, status=status
            )
        flash(request, translator(request).gettext("The bulk grant has started."))
        return Redirect(f"/console/bulk-grants/{bulk_id}", status_code=303)

    @get("/{bulk_id:uuid}/progress")
    async def bulk_progress(
        self, request: Request[Any, Any, Any], db: DbSession, bulk_id: uuid.UUID
    ) -> Response[Any]:
        """The job's progress as JSON for the progress bar (polled by console.js)."""
        bulk = await services.get_bulk_grant(db, bulk_id)
        stale_after = progress.waiting_after(request.app.state.kernel.settings)
        job = (
            progress.job_out(await progress.get(db, bulk.job_id), stale_after=stale_after)
            if bulk.job_id
            else None
        )
        finished = bulk.status in ("done", "failed")
        waiting = not finished and job is not None and job.state == "waiting"
        done, total = (job.done, job.total) if job else (0, bulk.valid_rows)
        percent = 100.0 if bulk.status == "done" else (job.percent if job else 0.0)
        body = {
            "status": bulk.status,
            "label": translator(request).gettext(
                JOB_STATUS_LABELS["waiting"] if waiting else STATUS_LABELS.get(bulk.status, bulk.status)
            ),
            "waiting": waiting,
            "done": total if bulk.status == "done" else done,
            "total": total,
            "percent": percent,
            "finished": finished,
            "error": bulk.error,
            "next": f"/console/bulk-grants/{bulk.id}" if finished else None,
        }
        return Response(body, headers={"Cache-Control": "no-store"})

    @get("/{bulk_id:uuid}/results.csv")
    async def results(
        self, request: Request[Any, Any, Any], db: DbSession, bulk_id: uuid.UUID
    ) -> Response[bytes]:
        """The per-row result (UTF-8 with BOM; contacts and codes masked), in the console's language."""
        body = await results_csv(db, request.app.state.kernel, bulk_id, locale_of(request))
        return Response(
            content=body,
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="bulk-grant-{bulk_id}.csv"',
                "Cache-Control": "no-store",
            },
        )
