"""Members API: ``/api/v1/members`` (list, create, CSV import) and ``/api/v1/members/{member_id}``.

The phone never comes back in plaintext: responses carry ``phone_masked`` (``138****5678``); the
``phone`` filter looks members up by the keyed digest.
"""

from __future__ import annotations

import io
import uuid
from typing import IO, Annotated, Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.datastructures import UploadFile
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import FieldError, ValidationFailed
from core.http.uploads import UPLOAD_CEILING, read_body
from core.members import services
from core.members.schemas import MemberCreate, MemberImportReport, MemberOut, MemberPage, MemberUpdate
from tenants.guards import provide_db, require_scope


class MemberController(Controller):
    path = "/api/v1/members"
    tags = ["members"]
    dependencies = {"db": Provide(provide_db)}

    @get("/", guards=[require_scope("members:read")])
    async def list_members(
        self,
        request: Request[Any, Any, Any],
        db: AsyncSession,
        tag: Annotated[str | None, Parameter(max_length=40)] = None,
        q: Annotated[str | None, Parameter(max_length=120)] = None,
        phone: Annotated[str | None, Parameter(max_length=30)] = None,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=services.MAX_PAGE)] = 50,
    ) -> MemberPage:
        """Members newest first; filter by ``tag``, ``q`` (external id, name, e-mail or phone) or ``phone``."""
        return await services.list_members(
            db, request.app.state.kernel, after=cursor, limit=limit, tag=tag, q=q, phone=phone
        )

    @post("/", guards=[require_scope("members:write")])
    async def create_member(
        self, request: Request[Any, Any, Any], db: AsyncSession, data: MemberCreate
    ) -> MemberOut:
        """Create a member; ``409 member_exists`` when the external id or the phone is taken."""
        member = await services.create_member(db, request.app.state.kernel, data, source="api")
        return services.member_out(member)

    @get("/{member_id:uuid}", guards=[require_scope("members:read")])
    async def get_member(self, db: AsyncSession, member_id: uuid.UUID) -> MemberOut:
        return services.member_out(await services.get_member(db, member_id))

    @patch("/{member_id:uuid}", guards=[require_scope("members:write")])
    async def update_member(
        self, request: Request[Any, Any, Any], db: AsyncSession, member_id: uuid.UUID, data: MemberUpdate
    ) -> MemberOut:
        """Change the fields sent (``null`` clears one); the same uniqueness rules as creation."""
        member = await services.update_member(db, request.app.state.kernel, member_id, data)
        return services.member_out(member)

    @post(
        "/import",
        status_code=201,
        guards=[require_scope("members:write")],
        request_max_body_size=UPLOAD_CEILING,
    )
    async def import_members(
        self, request: Request[Any, Any, Any], db: AsyncSession
    ) -> Response[MemberImportReport]:
        """Import a CSV/TXT/XLSX of members (multipart field ``file``, or the raw body as ``text/csv``).

        All or nothing: ``201`` with the report when every row was inserted; ``422 member_import_rejected``
        with the per-row problems otherwise. Synchronous, up to 50,000 rows per file.
        """
        kernel = request.app.state.kernel
        limit: int = kernel.settings.max_import_bytes
        content_type, _ = request.content_type
        encoding: str | None = request.query_params.get("encoding") or None
        file: IO[bytes]
        if content_type == "multipart/form-data":
            form = await request.form()
            upload = form.get("file")
            if isinstance(upload, UploadFile):
                file, filename = upload.file, upload.filename or ""
            elif isinstance(form.get("text"), str):
                file, filename = io.BytesIO(form["text"].encode("utf-8")), ""
            else:
                raise ValidationFailed(
                    "Send the members as a file (field 'file')",
                    "请以文件（字段 file）提交会员",
                    errors=[FieldError(field="file", message="required", code="required")],
                )
            encoding = form.get("encoding") if isinstance(form.get("encoding"), str) else encoding
        else:
            file = await read_body(request, limit, with_size=False)
            filename = request.query_params.get("filename", "")
        report = await services.import_members(
            db, kernel, file, filename, max_bytes=limit, encoding=encoding or None
        )
        if report.inserted == 0:
            raise ValidationFailed(
                f"Nothing was imported: {len(report.problems)} row problem(s)",
                f"未导入任何会员：{len(report.problems)} 行存在问题",
                code="member_import_rejected",
                extra=_report_extra(report),
            )
        return Response(report, status_code=201)


def _report_extra(report: MemberImportReport) -> dict[str, Any]:
    return {
        "encoding": report.encoding,
        "total_rows": report.total_rows,
        "valid_rows": report.valid_rows,
        "inserted": 0,
        "problems": [
            {"row": p.row, "field": p.field, "code": p.code, "message": p.message} for p in report.problems
        ],
    }
