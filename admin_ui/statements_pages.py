"""Tenant console "Statements" pages (结算对账 → 对账单): the imports and fetches, an upload with a mapping
step, the import report and the lines.

Upload: choose the channel account and the file → the mapping step shows the header found and the first
rows, with each field's column preselected (the account's saved mapping, else the one suggested by known
Chinese/English header names) → import (the mapping is saved for the account's next file) → the report
(new / repeated lines, notes) and the lines; a file with bad rows shows every row's problem and stores
nothing. Fetch: an account and a date range (days in the tenant's zone) through the account's connector.

Everything goes through :mod:`core.settlement.statements`; the file travels from the upload to the mapping
step inside the form (base64) when it is at most :data:`CARRY_BYTES`, otherwise it is chosen again.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
import uuid
import zoneinfo
from typing import IO, Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import FormMultiDict, UploadFile
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect

from admin_ui.console_pages import shell
from admin_ui.forms import FormInvalid, FormProblem, problem_of, read_form, values
from admin_ui.i18n import N_
from admin_ui.rendering import flash, locale_of, render, translator
from core.audit.context import current_actor
from core.db.types import DbSession
from core.errors import DomainError, ValidationFailed
from core.http.uploads import UPLOAD_CEILING, check_declared_length
from core.settlement import statements as services
from core.settlement.models import LINE_KINDS
from core.settlement.statement_files import FIELDS, REQUIRED_FIELDS
from core.settlement.statement_schemas import MappingIn
from core.splits.ledger import tenant_zone
from tenants.guards import provide_db, require_permission

VIEW = "settlement.read"
MANAGE = "settlement.manage"
PAGE = 50
LINES_PAGE = 100
#: Files up to this size travel inside the mapping form; larger ones are chosen again there.
CARRY_BYTES = 4 * 1024 * 1024
SHOWN_PROBLEMS = 200

FIELD_LABELS: dict[str, str] = {
    "line_id": N_("Line id (流水号)"),
    "order_id": N_("Order number"),
    "order_line_id": N_("Order line number"),
    "kind": N_("Kind"),
    "amount": N_("Amount"),
    "commission": N_("Commission"),
    "occurred_at": N_("Time"),
    "description": N_("Description"),
}
KIND_LABELS: dict[str, str] = {
    "sale": N_("Sale"), "refund": N_("Refund"), "commission": N_("Commission"), "adjustment": N_("Adjustment"),
}
SOURCE_LABELS: dict[str, str] = {"file": N_("File import"), "fetch": N_("Fetched from the channel")}
FILE_MESSAGE = N_("Choose the statement file.")
ACCOUNT_MESSAGE = N_("Choose the channel account.")
KINDS_MESSAGE = N_("Write one label per line as 标签 = sale, refund, commission or adjustment.")
DATES_MESSAGE = N_("Enter the first and the last day as YYYY-MM-DD.")
UuidQuery = Annotated[uuid.UUID | None, Parameter(required=False)]

assert set(FIELD_LABELS) == set(FIELDS) and set(KIND_LABELS) == set(LINE_KINDS)


def _by() -> str:
    who = current_actor()
    return f"{who.type}:{who.id}"


def _account_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise FormInvalid("account_id", ACCOUNT_MESSAGE) from None


def _kinds_text(kinds: dict[str, str]) -> str:
    return "\n".join(f"{label} = {kind}" for label, kind in kinds.items())


def _kinds(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        label, sep, kind = line.partition("=")
        if not sep or not label.strip() or kind.strip() not in LINE_KINDS or len(label.strip()) > 50:
            raise FormInvalid("kinds", KINDS_MESSAGE)
        out[label.strip()] = kind.strip()
    return out


def _mapping(form: dict[str, str]) -> MappingIn:
    columns = {f: form[f"map_{f}"] for f in FIELDS if form[f"map_{f}"]}
    for f in REQUIRED_FIELDS:
        if f not in columns:
            raise FormInvalid(f"map_{f}", N_("Choose the columns of the order number, the amount and the time."))
    unit = form["amount_unit"] if form["amount_unit"] in ("yuan", "fen") else "yuan"
    return MappingIn(columns=columns, kinds=_kinds(form["kinds"]), amount_unit=unit)  # type: ignore[arg-type]  # checked above


def _file(raw: FormMultiDict) -> tuple[IO[bytes], str]:
    """The uploaded file, else the one carried by the mapping form; :class:`FormInvalid` when neither."""
    upload = raw.get("file")
    if isinstance(upload, UploadFile) and upload.filename:
        return upload.file, upload.filename
    carried, name = raw.get("content"), raw.get("filename")
    if isinstance(carried, str) and carried:
        try:
            return io.BytesIO(base64.b64decode(carried, validate=True)), str(name or "")
        except (binascii.Error, ValueError):
            raise FormInvalid("file", FILE_MESSAGE) from None
    raise FormInvalid("file", FILE_MESSAGE)


def _day(text: str, zone: str) -> dt.datetime:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise FormInvalid("start", DATES_MESSAGE) from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=zoneinfo.ZoneInfo(zone))


def _labels() -> dict[str, Any]:
    return {"field_labels": FIELD_LABELS, "kind_labels": KIND_LABELS, "source_labels": SOURCE_LABELS,
            "fields": FIELDS, "required": REQUIRED_FIELDS}


class StatementsPagesController(Controller):
    path = "/statements"
    guards = [require_permission(VIEW)]
    dependencies = {"db": Provide(provide_db)}

    async def _list_page(self, request: Request[Any, Any, Any], db: DbSession, *, account: uuid.UUID | None = None,
                         cursor: uuid.UUID | None = None, problem: FormProblem | None = None,
                         form: dict[str, str] | None = None, status: int = 200) -> Response[str]:
        ctx = await shell(request, db)
        page = await services.list_statements(db, account_id=account, cursor=cursor, limit=PAGE)
        accounts = await services.channel_accounts(db)
        ctx.update(statements=page.items, next_cursor=page.next_cursor, accounts=accounts,
                   account_names={a.id: a.name for a in accounts}, account=str(account or ""), problem=problem,
                   form=form or {}, max_mb=request.app.state.kernel.settings.max_import_bytes // (1024 * 1024),
                   **_labels())
        return render(request, "console/statements/list.html", ctx, status=status)

    @get("/")
    async def statements(self, request: Request[Any, Any, Any], db: DbSession, account: UuidQuery = None,
                         cursor: UuidQuery = None) -> Response[str]:
        """The imports and fetches, newest first; the upload and fetch forms."""
        return await self._list_page(request, db, account=account, cursor=cursor)

    async def _mapping_page(self, request: Request[Any, Any, Any], db: DbSession, account_id: uuid.UUID,
                            file: IO[bytes], filename: str, form: dict[str, str] | None,
                            problem: FormProblem | None = None, status: int = 200) -> Response[str]:
        limit: int = request.app.state.kernel.settings.max_import_bytes
        p = await services.preview_file(db, account_id, file, filename, max_bytes=limit)
        file.seek(0)
        data = file.read(CARRY_BYTES + 1)  # carried in the form when it fits, else chosen again
        if form is None:
            # the saved mapping where the file has its columns, else what the headers suggest
            saved = {f: h for f, h in p.saved.columns.items() if h in p.headers}
            form = {f"map_{f}": saved.get(f) or p.suggested.get(f, "") for f in FIELDS}
            form.update(amount_unit=p.saved.amount_unit, kinds=_kinds_text(p.saved.kinds))
        ctx = await shell(request, db)
        ctx.update(preview=p, account_id=str(account_id), filename=filename, form=form, problem=problem,
                   account_name=next((a.name for a in await services.channel_accounts(db) if a.id == account_id), ""),
                   content=base64.b64encode(data).decode() if len(data) <= CARRY_BYTES else "", **_labels())
        return render(request, "console/statements/mapping.html", ctx, status=status)

    @post("/upload", status_code=200, guards=[require_permission(MANAGE)], request_max_body_size=UPLOAD_CEILING)
    async def upload(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        """Step 2: the mapping step for the chosen file (its header and first rows; nothing stored)."""
        form: dict[str, str] = {}
        try:
            check_declared_length(request, request.app.state.kernel.settings.max_import_bytes)
            raw = await read_form(request)
            form = values(raw, "account_id")
            account_id = _account_id(form["account_id"])
            file, filename = _file(raw)
            return await self._mapping_page(request, db, account_id, file, filename, None)
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            return await self._failed(request, db, exc, form)

    async def _failed(self, request: Request[Any, Any, Any], db: DbSession, exc: Exception,
                      form: dict[str, str]) -> Response[str]:
        status = exc.status if isinstance(exc, DomainError) else 422
        problem = problem_of(exc, translator(request), locale_of(request))
        return await self._list_page(request, db, problem=problem, form=form, status=status)

    @post("/import", status_code=303, guards=[require_permission(MANAGE)], request_max_body_size=UPLOAD_CEILING)
    async def import_file(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        """Step 3: import with the chosen mapping (saved for next time) → the report; bad rows → their list."""
        limit: int = request.app.state.kernel.settings.max_import_bytes
        names = ("account_id", "amount_unit", "kinds", *(f"map_{f}" for f in FIELDS))
        form: dict[str, str] = {}
        try:
            check_declared_length(request, limit)
            raw = await read_form(request)
            form = values(raw, *names)
            account_id = _account_id(form["account_id"])
            file, filename = _file(raw)
        except (DomainError, FormInvalid) as exc:
            return await self._failed(request, db, exc, form)
        try:
            statement = await services.import_file(db, account_id, file, filename, max_bytes=limit, by=_by(),
                                                   mapping=_mapping(form))
        except ValidationFailed as exc:
            await db.rollback()
            if exc.code == "statement_rows_invalid":
                return await self._refused(request, db, account_id, filename, exc)
            return await self._mapping_page(request, db, account_id, file, filename, form,
                                            problem_of(exc, translator(request), locale_of(request)), exc.status)
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            return await self._mapping_page(request, db, account_id, file, filename, form,
                                            problem_of(exc, translator(request), locale_of(request)), 422)
        t = translator(request)
        flash(request, t.gettext("%(new)s new lines stored, %(repeated)s already there.")
              % {"new": statement.lines_new, "repeated": statement.lines_repeated})
        return Redirect(f"/console/statements/{statement.id}", status_code=303)

    async def _refused(self, request: Request[Any, Any, Any], db: DbSession, account_id: uuid.UUID,
                       filename: str, exc: ValidationFailed) -> Response[str]:
        ctx = await shell(request, db)
        ctx.update(refusal=exc.detail(locale_of(request)), filename=filename, account_id=str(account_id),
                   problems=list(exc.extra.get("problems") or [])[:SHOWN_PROBLEMS], extra=exc.extra,
                   zh=locale_of(request).lower().startswith("zh"), **_labels())
        return render(request, "console/statements/refused.html", ctx, status=422)

    @post("/fetch", status_code=303, guards=[require_permission(MANAGE)])
    async def fetch(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        """Fetch an account's statement of a date range through its connector."""
        form = values(await read_form(request), "account_id", "start", "end")
        kernel = request.app.state.kernel
        try:
            account_id = _account_id(form["account_id"])
            zone = await tenant_zone(db)
            start = _day(form["start"], zone)
            end = _day(form["end"], zone) + dt.timedelta(days=1)
            statement = await services.fetch_statement(
                db, kernel.db, await kernel.keys.cipher(db), request.app.state.jobs.plugins, account_id,
                start, end, by=_by(), embedded=not kernel.settings.redis_url)
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            return await self._failed(request, db, exc, form)
        t = translator(request)
        flash(request, t.gettext("%(new)s new lines stored, %(repeated)s already there.")
              % {"new": statement.lines_new, "repeated": statement.lines_repeated})
        return Redirect(f"/console/statements/{statement.id}", status_code=303)

    @get("/{statement_id:uuid}")
    async def statement(self, request: Request[Any, Any, Any], db: DbSession, statement_id: uuid.UUID,
                        cursor: UuidQuery = None) -> Response[str]:
        """The report of one import or fetch, and the lines it stored."""
        s = services.statement_out(await services.get_statement(db, statement_id))
        lines = await services.list_lines(db, statement_id, cursor=cursor, limit=LINES_PAGE)
        ctx = await shell(request, db)
        ctx.update(statement=s, lines=lines.items, next_cursor=lines.next_cursor,
                   account_names={a.id: a.name for a in await services.channel_accounts(db)},
                   zh=locale_of(request).lower().startswith("zh"), **_labels())
        return render(request, "console/statements/detail.html", ctx)
