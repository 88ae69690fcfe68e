"""Statements API: ``/api/v1/statements`` (list, read, lines, file import, file preview, fetch through the
connector) and ``/api/v1/statement-mappings/{account_id}`` (get, put).

A file is sent as ``multipart/form-data``: ``file``, ``account_id``, optionally ``mapping`` (the JSON of a
mapping: used and saved for the account) and ``encoding`` (to override detection). Uploads may be up to
``KAQUAN_MAX_IMPORT_BYTES``.
"""

from __future__ import annotations

import uuid
from typing import IO, Annotated, Any

import msgspec
from litestar import Controller, Request, get, post, put
from litestar.datastructures import UploadFile
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.context import current_actor
from core.errors import FieldError, ValidationFailed
from core.http.uploads import UPLOAD_CEILING, check_declared_length
from core.settlement import statements as services
from core.settlement.statement_schemas import (
    FetchIn,
    MappingIn,
    MappingOut,
    PreviewOut,
    StatementLinePage,
    StatementOut,
    StatementPage,
)
from tenants.guards import provide_db, require_scope

READ = "settlement:read"
WRITE = "settlement:write"


def actor_label() -> str:
    """Who is acting, as stored in ``created_by`` (``user:<id>``, ``api_client:<id>``)."""
    who = current_actor()
    return f"{who.type}:{who.id}"


def _invalid(field: str, en: str, zh: str) -> ValidationFailed:
    return ValidationFailed(en, zh, errors=[FieldError(field=field, message=en, code="invalid")])


async def _upload(request: Request[Any, Any, Any]) -> tuple[uuid.UUID, IO[bytes], str, dict[str, Any]]:
    """The account, file, file name and other form fields of a multipart upload."""
    limit: int = request.app.state.kernel.settings.max_import_bytes
    check_declared_length(request, limit)
    if request.content_type[0] != "multipart/form-data":
        raise _invalid("file", "Send the statement file as multipart/form-data (field 'file')",
                       "请以 multipart/form-data 上传对账单文件（字段 file）")
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise _invalid("file", "The field 'file' (the statement file) is required", "缺少字段 file（对账单文件）")
    try:
        account_id = uuid.UUID(str(form.get("account_id") or ""))
    except ValueError:
        raise _invalid("account_id", "account_id must be the id of a sales channel account",
                       "account_id 必须是销售渠道账号的 id") from None
    encoding = form.get("encoding")
    return account_id, upload.file, upload.filename or "", {
        "mapping": form.get("mapping"), "encoding": encoding if isinstance(encoding, str) and encoding else None,
    }


def _mapping(raw: Any) -> MappingIn | None:
    if raw is None or raw == "":
        return None
    try:
        return msgspec.json.decode(str(raw).encode(), type=MappingIn)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _invalid("mapping", f"The mapping is not valid: {exc}", f"列映射无效：{exc}") from None


class StatementsController(Controller):
    path = "/api/v1/statements"
    tags = ["settlement"]
    dependencies = {"db": Provide(provide_db)}

    @get("/", guards=[require_scope(READ)])
    async def list_statements(
        self,
        db: AsyncSession,
        account_id: Annotated[uuid.UUID | None, Parameter(query="account")] = None,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=services.MAX_PAGE)] = 50,
    ) -> StatementPage:
        """Statement imports and fetches, newest first (``account`` filters by channel account)."""
        return await services.list_statements(db, account_id=account_id, cursor=cursor, limit=limit)

    @get("/{statement_id:uuid}", guards=[require_scope(READ)])
    async def get_statement(self, db: AsyncSession, statement_id: uuid.UUID) -> StatementOut:
        """One import or fetch with its report (counts new / repeated, notes on repeated rows)."""
        return services.statement_out(await services.get_statement(db, statement_id))

    @get("/{statement_id:uuid}/lines", guards=[require_scope(READ)])
    async def list_lines(
        self,
        db: AsyncSession,
        statement_id: uuid.UUID,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=services.MAX_PAGE)] = 100,
    ) -> StatementLinePage:
        """The lines this statement stored, in file order (amounts in fen, times in UTC)."""
        return await services.list_lines(db, statement_id, cursor=cursor, limit=limit)

    @post("/imports", status_code=201, guards=[require_scope(WRITE)], request_max_body_size=UPLOAD_CEILING)
    async def import_file(self, request: Request[Any, Any, Any], db: AsyncSession) -> StatementOut:
        """Import a CSV/XLSX statement file; any bad row → ``422 statement_rows_invalid``, nothing stored."""
        account_id, file, filename, extra = await _upload(request)
        statement = await services.import_file(
            db, account_id, file, filename, max_bytes=request.app.state.kernel.settings.max_import_bytes,
            by=actor_label(), mapping=_mapping(extra["mapping"]), encoding=extra["encoding"],
        )
        return services.statement_out(statement)

    @post("/previews", status_code=200, guards=[require_scope(WRITE)], request_max_body_size=UPLOAD_CEILING)
    async def preview(self, request: Request[Any, Any, Any], db: AsyncSession) -> PreviewOut:
        """The file's header, first rows and suggested mapping, and the account's saved one (stores nothing)."""
        account_id, file, filename, extra = await _upload(request)
        return await services.preview_file(db, account_id, file, filename, encoding=extra["encoding"],
                                           max_bytes=request.app.state.kernel.settings.max_import_bytes)

    @post("/fetches", status_code=201, guards=[require_scope(WRITE)])
    async def fetch(self, request: Request[Any, Any, Any], db: AsyncSession, data: FetchIn) -> StatementOut:
        """Fetch the account's statement of ``[start, end)`` through its connector (every page)."""
        kernel = request.app.state.kernel
        statement = await services.fetch_statement(
            db, kernel.db, await kernel.keys.cipher(db), request.app.state.jobs.plugins, data.account_id,
            data.start, data.end, by=actor_label(), embedded=not kernel.settings.redis_url,
        )
        return services.statement_out(statement)


    @post("/fetch-jobs", status_code=202, guards=[require_scope(WRITE)])
    async def fetch_job(self, request: Request[Any, Any, Any], db: AsyncSession, data: FetchIn) -> StatementOut:
        """Queue the fetch (long ranges): ``202`` with the statement, ``running`` until the job has stored its
        lines (``done``) or recorded why not (``failed``, ``error``; nothing stored). Refusals as for a fetch."""
        kernel = request.app.state.kernel
        statement = await services.start_fetch(
            db, kernel.db, await kernel.keys.cipher(db), request.app.state.jobs.plugins, data.account_id,
            data.start, data.end, by=actor_label(), embedded=not kernel.settings.redis_url,
        )
        return services.statement_out(statement)


class StatementMappingsController(Controller):
    path = "/api/v1/statement-mappings"
    tags = ["settlement"]
    dependencies = {"db": Provide(provide_db)}

    @get("/{account_id:uuid}", guards=[require_scope(READ)])
    async def get_mapping(self, db: AsyncSession, account_id: uuid.UUID) -> MappingOut:
        """The account's saved column mapping (``saved: false`` when none yet)."""
        return await services.get_mapping(db, account_id)

    @put("/{account_id:uuid}", guards=[require_scope(WRITE)])
    async def put_mapping(self, db: AsyncSession, account_id: uuid.UUID, data: MappingIn) -> MappingOut:
        """Save the account's column mapping (order_id, amount and occurred_at required)."""
        return await services.save_mapping(db, account_id, data, actor_label())
