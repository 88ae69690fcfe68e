"""Bulk grants: ``/api/v1/bulk-grants``.

``POST /api/v1/bulk-grants`` takes the recipient file as ``multipart/form-data`` (field ``file``, optional
``campaign_ref`` and ``channel``) and answers ``201`` with the validation report; nothing is granted until
``POST /api/v1/bulk-grants/{id}/confirm`` (``202`` with the job id; progress at ``GET /api/v1/jobs/{id}``).
``GET /api/v1/bulk-grants/{id}/results.csv`` gives the per-row result. Uploads may be up to
``KAQUAN_MAX_IMPORT_BYTES``; larger gets ``413 import_too_large``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.bulk_grants import services
from core.bulk_grants.results import results_csv
from core.bulk_grants.schemas import BulkGrantFields, BulkGrantOut, BulkGrantPage, BulkJobAccepted
from core.errors import FieldError, ValidationFailed
from core.http.uploads import UPLOAD_CEILING, check_declared_length
from core.inventory.importing.services import to_request
from tenants.guards import principal_of, provide_db, require_scope


class BulkGrantController(Controller):
    path = "/api/v1/bulk-grants"
    tags = ["grants"]
    dependencies = {"db": Provide(provide_db)}

    @post("/", status_code=201, guards=[require_scope("grants:write")], request_max_body_size=UPLOAD_CEILING)
    async def create(self, request: Request[Any, Any, Any], db: AsyncSession) -> BulkGrantOut:
        """Upload and validate a recipient file (CSV/XLSX: name, phone or e-mail, SKU, quantity); returns the report."""
        kernel = request.app.state.kernel
        limit: int = kernel.settings.max_import_bytes
        check_declared_length(request, limit, action="upload")
        content_type, _ = request.content_type
        if content_type != "multipart/form-data":
            raise ValidationFailed(
                "Send the recipient file as multipart/form-data (field 'file')",
                "请以 multipart/form-data 上传领取人文件（字段 file）",
                code="bulk_file_required",
                errors=[FieldError(field="file", message="required", code="required")],
            )
        form = await request.form()
        fields = to_request({k: form.get(k) for k in ("campaign_ref", "channel")}, BulkGrantFields)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ValidationFailed(
                "Send the recipient file in the field 'file'",
                "请在字段 file 中上传领取人文件",
                code="bulk_file_required",
                errors=[FieldError(field="file", message="required", code="required")],
            )
        principal = principal_of(request)
        bulk = await services.create_bulk_grant(
            db,
            kernel,
            upload.file,
            upload.filename or "",
            fields,
            max_bytes=limit,
            client_id=principal.client_pk if principal else None,
        )
        return services.bulk_out(bulk)

    @get("/", guards=[require_scope("grants:read")])
    async def index(
        self,
        db: AsyncSession,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> BulkGrantPage:
        """The tenant's bulk grants, newest first (``next_cursor`` → ``?cursor=``)."""
        rows, nxt = await services.list_bulk_grants(db, before=cursor, limit=limit)
        return BulkGrantPage(items=[services.bulk_out(b) for b in rows], next_cursor=nxt)

    @get("/{bulk_id:uuid}", guards=[require_scope("grants:read")])
    async def show(self, db: AsyncSession, bulk_id: uuid.UUID) -> BulkGrantOut:
        """A bulk grant: status, validation report, counts (granted, failed, already granted) and job id."""
        return services.bulk_out(await services.get_bulk_grant(db, bulk_id))

    @post("/{bulk_id:uuid}/confirm", status_code=202, guards=[require_scope("grants:write")])
    async def confirm(self, db: AsyncSession, bulk_id: uuid.UUID) -> BulkJobAccepted:
        """Grant the pending rows in a job (rows with problems or granted before are left out)."""
        bulk, job = await services.confirm_bulk_grant(db, bulk_id)
        return BulkJobAccepted(job_id=job.id, bulk_grant_id=bulk.id, status=bulk.status)

    @get("/{bulk_id:uuid}/results.csv", guards=[require_scope("grants:read")], media_type="text/csv")
    async def results(
        self, request: Request[Any, Any, Any], db: AsyncSession, bulk_id: uuid.UUID, lang: str = "zh-CN"
    ) -> Response[bytes]:
        """The per-row result as CSV (UTF-8 with BOM; contacts and codes masked); ``?lang=en`` for English."""
        body = await results_csv(db, request.app.state.kernel, bulk_id, lang)
        return Response(
            content=body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="bulk-grant-{bulk_id}.csv"'},
        )
