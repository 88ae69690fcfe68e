"""Code imports and generations: ``/api/v1/code-imports`` and ``/api/v1/code-generations``.

``POST /api/v1/code-imports`` takes the file as ``multipart/form-data`` (field ``file``, or ``text`` for
pasted codes, plus the batch fields), as a raw body (``text/csv``, ``application/octet-stream``,
``text/plain`` …) with the batch fields and ``filename`` as query parameters, or as JSON with ``text``.
It answers ``201`` with the validation report; nothing is stored as stock until
``POST /api/v1/code-imports/{id}/confirm`` (``202`` with the job id; progress at ``GET /api/v1/jobs/{id}``).
Uploads may be up to ``KAQUAN_MAX_IMPORT_BYTES``; larger gets ``413 import_too_large``.
"""

from __future__ import annotations

import io
import uuid
from typing import IO, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import FieldError, ValidationFailed
from core.http.uploads import MULTIPART_SLACK, UPLOAD_CEILING, check_declared_length, read_body
from core.inventory.importing import services
from core.inventory.importing.schemas import (
    ConfirmRequest,
    GenerationRequest,
    ImportOut,
    ImportRequest,
    JobAccepted,
    TextImportRequest,
)
from tenants.guards import provide_db, require_scope

_FORM_FIELDS = ("product_id", "supplier", "unit_cost", "currency", "purchase_ref", "expires_at", "notes", "encoding")


class CodeImportController(Controller):
    path = "/api/v1"
    tags = ["inventory"]
    dependencies = {"db": Provide(provide_db)}

    @post(
        "/code-imports",
        status_code=201,
        guards=[require_scope("inventory:write")],
        request_max_body_size=UPLOAD_CEILING,
    )
    async def create(self, request: Request[Any, Any, Any], db: AsyncSession) -> ImportOut:
        """Upload and validate a file of codes; returns the report (nothing is stored as stock yet)."""
        kernel = request.app.state.kernel
        limit: int = kernel.settings.max_import_bytes
        check_declared_length(request, limit)
        content_type, _ = request.content_type
        file: IO[bytes]
        if content_type == "multipart/form-data":
            form = await request.form()
            raw = {k: form.get(k) for k in _FORM_FIELDS}
            fields: ImportRequest = services.to_request(raw, ImportRequest)
            fields.mapping = services.parse_mapping(form.get("mapping"))
            upload = form.get("file")
            if isinstance(upload, UploadFile):
                file, filename = upload.file, upload.filename or ""
            elif isinstance(form.get("text"), str):
                file, filename = io.BytesIO(form["text"].encode("utf-8")), ""
            else:
                raise ValidationFailed(
                    "Send the codes as a file (field 'file') or as text (field 'text')",
                    "请以文件（字段 file）或文本（字段 text）提交卡密",
                    errors=[FieldError(field="file", message="required", code="required")],
                )
        elif content_type == "application/json":
            body = await read_body(request, limit + MULTIPART_SLACK)
            try:
                data = msgspec.json.decode(body.read(), type=TextImportRequest)
            except msgspec.ValidationError as exc:
                raise ValidationFailed(
                    "Some fields are invalid", "部分字段无效", errors=[FieldError(field="body", message=str(exc))]
                ) from None
            except msgspec.DecodeError:
                raise ValidationFailed(
                    "The request body is not valid JSON", "请求体不是有效的 JSON", code="malformed_json", status=400
                ) from None
            fields = data
            file, filename = io.BytesIO(data.text.encode("utf-8")), ""
        else:
            params = dict(request.query_params)
            fields = services.to_request({k: params.get(k) for k in _FORM_FIELDS}, ImportRequest)
            fields.mapping = services.parse_mapping(params.get("mapping"))
            file, filename = await read_body(request, limit), params.get("filename", "")
        imp = await services.create_import(db, kernel.keys, file, filename, fields, max_bytes=limit)
        return services.import_out(imp)

    @get("/code-imports/{import_id:uuid}", guards=[require_scope("inventory:read")])
    async def show(self, db: AsyncSession, import_id: uuid.UUID) -> ImportOut:
        """An import or generation: status, report, batch fields, job and batch ids."""
        return services.import_out(await services.get_import(db, import_id))

    @post("/code-imports/{import_id:uuid}/confirm", status_code=202, guards=[require_scope("inventory:write")])
    async def confirm(self, db: AsyncSession, import_id: uuid.UUID, data: ConfirmRequest) -> JobAccepted:
        """Import the valid rows (``valid_only``) or nothing if any row has a problem (``all_or_nothing``)."""
        imp, job = await services.confirm_import(db, import_id, data.mode)
        return JobAccepted(job_id=job.id, import_id=imp.id, status=imp.status)

    @post("/code-generations", status_code=202, guards=[require_scope("inventory:write")])
    async def generate(self, db: AsyncSession, data: GenerationRequest) -> JobAccepted:
        """Generate ``count`` codes (Crockford base32 with a check symbol) into a new batch, as a job."""
        imp, job = await services.start_generation(db, data)
        return JobAccepted(job_id=job.id, import_id=imp.id, status=imp.status)
