"""Statements of the channels: an account's saved column mapping, file imports and fetches through the
account's connector, and reading them back.

A statement line is stored once per account and line id: importing or fetching the same lines again
stores nothing new (the statement's report counts them as repeated). A file with any bad row stores
nothing at all and answers ``422 statement_rows_invalid`` with every row's problem (row number, field,
value written, problem). ``Statement.digest`` is the SHA-256 of the file (of the fetched lines' JSON for a
fetch); ``StatementLine.period`` is the calendar month of the line's time in the tenant's zone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence
from typing import IO, Any

import msgspec
from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.connectors.calls import AccountUnavailable, BoundAccount, ConnectorCallFailed, bind_account
from core.connectors.models import ConnectorAccount
from core.crypto.envelope import TenantCipher
from core.db.base import utcnow
from core.db.ids import new_id
from core.db.paging import keyset_page
from core.db.session import Database, get_scoped
from core.errors import Conflict, DomainError, NotFound, ValidationFailed
from core.jobs.outbox import enqueue
from core.plugin_host import PluginHost
from core.settlement.models import Statement, StatementLine, StatementMapping
from core.settlement.statement_files import (
    MappingSpec,
    ParsedLine,
    RowProblem,
    check_mapping,
    content_id,
    open_statement,
    preview,
    read_lines,
)
from core.settlement.statement_schemas import (
    MappingIn,
    MappingOut,
    PreviewOut,
    StatementLineOut,
    StatementLinePage,
    StatementOut,
    StatementPage,
)
from core.splits.ledger import period_of, tenant_zone
from plugins import StatementPage as ChannelPage
from plugins import StatementRequest

__all__ = [
    "channel_accounts",
    "fetch_statement",
    "get_mapping",
    "get_statement",
    "import_file",
    "list_lines",
    "list_statements",
    "preview_file",
    "run_fetch",
    "save_mapping",
    "start_fetch",
    "statement_out",
]

MAX_PAGE = 200
#: Rows inserted per statement.
CHUNK = 2000
#: Problems returned with a refused file (all are counted).
MAX_PROBLEMS = 200
FETCH_MAX_DAYS = 93
FETCH_MAX_PAGES = 2000
FETCH_CALL_SECONDS = 30.0
FETCH_JOB = "fetch_channel_statement"


class ChannelUnavailable(DomainError):
    status, code = 502, "statement_fetch_failed"


# ------------------------------------------------------------------------------------------ accounts & mappings


async def channel_account(session: AsyncSession, account_id: uuid.UUID) -> ConnectorAccount:
    """The tenant's sales-channel account; ``404 statement_account_not_found`` otherwise."""
    account = await get_scoped(session, ConnectorAccount, account_id)
    if account is None or account.kind != "sales_channel":
        raise NotFound("No such sales channel account", "没有该销售渠道账号", code="statement_account_not_found")
    return account


class AccountChoice(msgspec.Struct, frozen=True):
    """A sales channel account as a form offers it."""

    id: uuid.UUID
    name: str
    connector_id: str
    status: str


async def channel_accounts(session: AsyncSession) -> list[AccountChoice]:
    """The tenant's sales channel accounts (connected ones), by name."""
    rows = (await session.execute(
        select(ConnectorAccount).where(ConnectorAccount.kind == "sales_channel",
                                       ConnectorAccount.status != "disconnected").order_by(ConnectorAccount.name)
    )).scalars()
    return [AccountChoice(a.id, a.name, a.connector_id, a.status) for a in rows]


def _mapping_out(account_id: uuid.UUID, m: StatementMapping | None) -> MappingOut:
    if m is None:
        return MappingOut(account_id=account_id, saved=False, columns={}, kinds={}, amount_unit="yuan")
    return MappingOut(account_id=account_id, saved=True, columns=dict(m.columns), kinds=dict(m.kinds),
                      amount_unit=m.amount_unit, updated_at=m.updated_at, updated_by=m.updated_by)


async def _saved(session: AsyncSession, account_id: uuid.UUID) -> StatementMapping | None:
    return (await session.execute(
        select(StatementMapping).where(StatementMapping.account_id == account_id)
    )).scalar_one_or_none()


async def get_mapping(session: AsyncSession, account_id: uuid.UUID) -> MappingOut:
    """The account's saved mapping (``saved: false`` and empty when there is none yet)."""
    await channel_account(session, account_id)
    return _mapping_out(account_id, await _saved(session, account_id))


def _spec(data: MappingIn) -> MappingSpec:
    return MappingSpec(columns={k: v.strip() for k, v in data.columns.items() if v.strip()},
                       kinds={k.strip(): v for k, v in data.kinds.items()}, amount_unit=data.amount_unit)


async def save_mapping(session: AsyncSession, account_id: uuid.UUID, data: MappingIn, by: str) -> MappingOut:
    """Save (replace) the account's mapping; ``422 statement_mapping_invalid`` when it lacks a required field."""
    await channel_account(session, account_id)
    spec = _spec(data)
    check_mapping(spec)
    m = await _saved(session, account_id)
    if m is None:
        m = StatementMapping(account_id=account_id)
        session.add(m)
    m.columns, m.kinds, m.amount_unit = dict(spec.columns), dict(spec.kinds), spec.amount_unit
    m.updated_at, m.updated_by = utcnow(), by[:200]
    await session.flush()
    record(session, "statement_mapping.saved", "connector_account", account_id,
           {"columns": spec.columns, "amount_unit": spec.amount_unit})
    return _mapping_out(account_id, m)


async def preview_file(session: AsyncSession, account_id: uuid.UUID, f: IO[bytes], filename: str, *,
                       max_bytes: int, encoding: str | None = None) -> PreviewOut:
    """The file's header, first rows and suggested mapping, with the account's saved mapping; stores nothing."""
    await channel_account(session, account_id)
    saved = await _saved(session, account_id)
    spec = MappingSpec(columns=dict(saved.columns)) if saved is not None else None
    p = preview(open_statement(f, filename, max_bytes=max_bytes, encoding=encoding), spec)
    return PreviewOut(encoding=p.encoding, file_format=p.file_format, header_row=p.header_row, headers=p.headers,
                      rows=p.rows, suggested=p.suggested, saved=_mapping_out(account_id, saved))


# ------------------------------------------------------------------------------------------ storing lines


def _digest(f: IO[bytes]) -> str:
    h = hashlib.sha256()
    f.seek(0)
    while chunk := f.read(1 << 20):
        h.update(chunk)
    f.seek(0)
    return h.hexdigest()


def _note(line: ParsedLine, code: str, en: str, zh: str) -> dict[str, Any]:
    return {"row": line.row, "field": "line_id", "value": line.line_id, "code": code,
            "message": en, "message_zh": zh}


async def _store(session: AsyncSession, statement: Statement, lines: Sequence[ParsedLine], zone: str
                 ) -> tuple[int, list[dict[str, Any]]]:
    """Insert the lines not stored yet (once per account and line id); (new, notes on stored lines that differ).

    One statement per chunk, whatever the planner's statistics: a conflicting line whose values differ is
    "updated" to its own line id (its values stay as stored) only so that ``RETURNING`` names it; a
    returned row of another statement is such a line, a row of this statement a new one."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    new = 0
    notes: list[dict[str, Any]] = []
    for start in range(0, len(lines), CHUNK):
        chunk = lines[start:start + CHUNK]
        values = [dict(
            id=new_id(), account_id=statement.account_id, statement_id=statement.id, line_id=ln.line_id,
            order_id=ln.order_id, order_line_id=ln.order_line_id, kind=ln.kind, amount_fen=ln.amount_fen,
            commission_fen=ln.commission_fen, occurred_at=ln.occurred_at, period=period_of(ln.occurred_at, zone),
            description=ln.description, row_number=ln.row,
        ) for ln in chunk]
        base = insert(StatementLine)
        theirs = base.excluded
        stmt = base.on_conflict_do_update(
            index_elements=["tenant_id", "account_id", "line_id"],
            set_={"line_id": theirs.line_id},
            where=or_(*(getattr(StatementLine, c) != getattr(theirs, c)
                        for c in ("kind", "amount_fen", "commission_fen", "order_id", "order_line_id"))),
        ).returning(StatementLine.line_id, StatementLine.statement_id)
        rows = (await session.execute(stmt, values)).all() if len(values) > 1 else (
            await session.execute(stmt.values(values[0]))).all()
        by_id = {ln.line_id: ln for ln in chunk}
        for line_id, statement_id in rows:
            if statement_id == statement.id:
                new += 1
                continue
            ln = by_id[line_id]
            notes.append(_note(ln, "differs_from_stored",
                               f"Line {ln.line_id} was stored before with other values; the stored line is kept",
                               f"流水 {ln.line_id} 之前已保存且内容不同，保留已保存的内容"))
    return new, notes


def _finish(statement: Statement, lines: Sequence[ParsedLine], total: int, new: int,
            notes: list[dict[str, Any]]) -> None:
    statement.lines_total = total
    statement.lines_new = new
    statement.lines_repeated = total - new
    statement.lines_rejected = 0
    statement.problems = notes[:MAX_PROBLEMS]
    if lines and statement.source == "file":
        statement.period_start = min(ln.occurred_at for ln in lines)
        statement.period_end = max(ln.occurred_at for ln in lines)
    statement.status = "done"
    statement.finished_at = utcnow()


def _refused(problems: list[RowProblem], rows: int) -> ValidationFailed:
    bad_rows = len({p.row for p in problems})
    return ValidationFailed(
        f"{bad_rows} of {rows} rows cannot be imported; nothing was stored. Correct the rows and import the "
        "file again",
        f"{rows} 行中有 {bad_rows} 行无法导入，未保存任何内容。请修正后重新导入",
        code="statement_rows_invalid",
        extra={"rows": rows, "rows_rejected": bad_rows, "problems_total": len(problems),
               "problems": [msgspec.to_builtins(p) for p in problems[:MAX_PROBLEMS]]},
    )


async def _mapping_for(session: AsyncSession, account_id: uuid.UUID, f: IO[bytes], filename: str,
                       mapping: MappingIn | None, max_bytes: int, encoding: str | None, by: str) -> MappingSpec:
    """The mapping given (saved for next time), else the saved one, else the one suggested by the headers."""
    if mapping is not None:
        await save_mapping(session, account_id, mapping, by)
        return _spec(mapping)
    saved = await _saved(session, account_id)
    if saved is not None:
        return MappingSpec(columns=dict(saved.columns), kinds=dict(saved.kinds), amount_unit=saved.amount_unit)
    p = preview(open_statement(f, filename, max_bytes=max_bytes, encoding=encoding))
    f.seek(0)
    spec = MappingSpec(columns=p.suggested)
    try:
        check_mapping(spec)
    except ValidationFailed:
        raise ValidationFailed(
            "This account has no saved column mapping and the file's headers do not name the order number, "
            "amount and time columns: give a column mapping",
            "该账号尚未保存列映射，且无法从表头识别订单号、金额和时间列，请指定列映射",
            code="statement_mapping_required", extra={"headers": p.headers, "suggested": p.suggested},
        ) from None
    return spec


async def import_file(session: AsyncSession, account_id: uuid.UUID, f: IO[bytes], filename: str, *,
                      max_bytes: int, by: str, mapping: MappingIn | None = None,
                      encoding: str | None = None) -> Statement:
    """Import a statement file; every row valid or nothing stored (``422 statement_rows_invalid``)."""
    await channel_account(session, account_id)
    spec = await _mapping_for(session, account_id, f, filename, mapping, max_bytes, encoding, by)
    upload = open_statement(f, filename, max_bytes=max_bytes, encoding=encoding)
    digest = _digest(f)
    zone = await tenant_zone(session)
    result = read_lines(upload, spec, zone)
    if result.problems:
        raise _refused(result.problems, result.rows)
    if not result.rows:
        raise ValidationFailed("The file has a header but no statement line", "文件只有表头，没有账单明细",
                               code="statement_empty")
    statement = Statement(account_id=account_id, source="file", filename=filename.rsplit("/", 1)[-1][-200:],
                          digest=digest, encoding=upload.encoding or upload.file_format, status="running",
                          created_by=by[:200])
    session.add(statement)
    await session.flush()
    new, notes = await _store(session, statement, result.lines, zone)
    _finish(statement, result.lines, result.rows, new, [msgspec.to_builtins(r) for r in result.repeats] + notes)
    await session.flush()
    record(session, "statement.imported", "statement", statement.id,
           {"account_id": str(account_id), "filename": statement.filename, "digest": digest,
            "lines_new": new, "lines_repeated": statement.lines_repeated})
    return statement


# ------------------------------------------------------------------------------------------ fetching


def _utc(at: dt.datetime, name: str) -> dt.datetime:
    if at.tzinfo is None:
        raise ValidationFailed(f"{name} needs a time zone (e.g. 2026-11-01T00:00:00+08:00)",
                               f"{name} 需要带时区（例如 2026-11-01T00:00:00+08:00）", code="statement_range_invalid")
    return at.astimezone(dt.UTC)


def _parsed(line: Any) -> ParsedLine:
    amount = abs(line.amount_fen) if line.kind in ("refund", "commission") else line.amount_fen
    at = line.occurred_at if line.occurred_at.tzinfo else line.occurred_at.replace(tzinfo=dt.UTC)
    parsed = ParsedLine(row=0, line_id=line.line_id.strip()[:100], order_id=line.order_id.strip()[:100],
                        order_line_id=line.order_line_id.strip()[:100], kind=line.kind, amount_fen=amount,
                        commission_fen=abs(line.commission_fen), occurred_at=at.astimezone(dt.UTC),
                        description=line.description[:500])
    return parsed if parsed.line_id else msgspec.structs.replace(parsed, line_id=content_id(parsed))


async def _pull(bound: Any, start: dt.datetime, end: dt.datetime) -> list[Any]:
    """Every line of ``[start, end)``, page by page until ``has_more`` is false."""
    lines: list[Any] = []
    cursor = ""
    for _ in range(FETCH_MAX_PAGES):
        try:
            page: ChannelPage = await bound.call("fetch_statement", StatementRequest(start=start, end=end, cursor=cursor),
                                                 expect=ChannelPage, limit=FETCH_CALL_SECONDS)
        except ConnectorCallFailed as exc:
            raise ChannelUnavailable(
                f"The channel did not give its statement ({exc.reason}); nothing was stored — try again later",
                f"渠道未能返回对账单（{exc.reason}），未保存任何内容，请稍后重试",
                extra={"reason": exc.reason},
            ) from None
        lines.extend(page.lines)
        if not page.has_more:
            return lines
        if not page.next_cursor or page.next_cursor == cursor:
            raise ChannelUnavailable("The channel's statement pages do not advance; nothing was stored",
                                     "渠道对账单分页游标未前进，未保存任何内容", extra={"reason": "cursor_stuck"})
        cursor = page.next_cursor
    raise ChannelUnavailable(f"The statement has more than {FETCH_MAX_PAGES} pages: fetch a shorter range",
                             f"对账单超过 {FETCH_MAX_PAGES} 页，请缩短时间范围", extra={"reason": "too_many_pages"})


async def _fetchable(session: AsyncSession, db: Database, cipher: TenantCipher, plugins: PluginHost,
                     account_id: uuid.UUID, start: dt.datetime, end: dt.datetime, embedded: bool
                     ) -> tuple[BoundAccount, dt.datetime, dt.datetime]:
    """The account bound to its connector and the range in UTC, or the refusal (404, 409, 422)."""
    account = await channel_account(session, account_id)
    start, end = _utc(start, "start"), _utc(end, "end")
    if not start < end or end - start > dt.timedelta(days=FETCH_MAX_DAYS):
        raise ValidationFailed(f"start must be before end, at most {FETCH_MAX_DAYS} days apart",
                               f"开始时间必须早于结束时间，且相差不超过 {FETCH_MAX_DAYS} 天", code="statement_range_invalid")
    try:
        bound = await bind_account(session, cipher, plugins, account_id, db=db, embedded=embedded,
                                   kind="sales_channel", health_session=session)
    except AccountUnavailable as exc:
        raise Conflict(f"The account cannot be used now ({exc.reason}); resume it first",
                       f"该账号当前不可用（{exc.reason}），请先恢复", code="statement_account_unavailable") from None
    if not bound.supports("statements"):
        raise Conflict(
            f"The connector of this account ({account.connector_id}) cannot fetch statements; import the "
            "channel's statement file (CSV or Excel) instead",
            f"该账号的连接器（{account.connector_id}）不支持拉取对账单，请改为导入渠道导出的对账单文件（CSV 或 Excel）",
            code="statement_fetch_unsupported",
        )
    return bound, start, end


async def _fill(session: AsyncSession, statement: Statement, bound: BoundAccount) -> None:
    """Pull every page of the statement's range and store the new lines (nothing when a page fails)."""
    assert statement.period_start is not None and statement.period_end is not None
    raw = await _pull(bound, statement.period_start, statement.period_end)
    seen: dict[str, ParsedLine] = {}
    for line in raw:
        parsed = _parsed(line)
        seen.setdefault(parsed.line_id, parsed)
    lines = list(seen.values())
    statement.digest = hashlib.sha256(msgspec.json.encode(raw)).hexdigest()
    new, notes = await _store(session, statement, lines, await tenant_zone(session))
    _finish(statement, lines, len(raw), new, notes)
    await session.flush()
    record(session, "statement.fetched", "statement", statement.id,
           {"account_id": str(statement.account_id), "start": statement.period_start.isoformat(),
            "end": statement.period_end.isoformat(), "lines_new": new, "lines_repeated": statement.lines_repeated})


async def _new_fetch(session: AsyncSession, account_id: uuid.UUID, start: dt.datetime, end: dt.datetime,
                     by: str) -> Statement:
    statement = Statement(account_id=account_id, source="fetch", filename="", encoding="", period_start=start,
                          period_end=end, status="running", created_by=by[:200])
    session.add(statement)
    await session.flush()
    return statement


async def fetch_statement(session: AsyncSession, db: Database, cipher: TenantCipher, plugins: PluginHost,
                          account_id: uuid.UUID, start: dt.datetime, end: dt.datetime, *, by: str,
                          embedded: bool = False) -> Statement:
    """Fetch the account's statement of ``[start, end)`` through its connector and store its new lines.

    ``409 statement_fetch_unsupported`` when the connector cannot fetch statements (import the file
    instead), ``409 statement_account_unavailable`` when the account is paused or its connector gone,
    ``502 statement_fetch_failed`` when the channel does not answer (nothing stored).
    """
    bound, start, end = await _fetchable(session, db, cipher, plugins, account_id, start, end, embedded)
    statement = await _new_fetch(session, account_id, start, end, by)
    await _fill(session, statement, bound)
    return statement


async def start_fetch(session: AsyncSession, db: Database, cipher: TenantCipher, plugins: PluginHost,
                      account_id: uuid.UUID, start: dt.datetime, end: dt.datetime, *, by: str,
                      embedded: bool = False) -> Statement:
    """Check the fetch as :func:`fetch_statement` does, then queue it: the statement stays ``running`` until
    the job has stored its lines (``done``) or recorded why it could not (``failed``, nothing stored)."""
    await _fetchable(session, db, cipher, plugins, account_id, start, end, embedded)
    statement = await _new_fetch(session, account_id, _utc(start, "start"), _utc(end, "end"), by)
    enqueue(session, FETCH_JOB, {"statement_id": str(statement.id)}, business_key=f"{FETCH_JOB}:{statement.id}")
    return statement


async def run_fetch(session: AsyncSession, db: Database, cipher: TenantCipher, plugins: PluginHost,
                    statement_id: uuid.UUID) -> Statement | None:
    """The queued fetch of ``statement_id`` (a statement no longer ``running`` is left alone)."""
    statement = await get_scoped(session, Statement, statement_id)
    if statement is None or statement.status != "running" or statement.source != "fetch":
        return None
    assert statement.period_start is not None and statement.period_end is not None
    bound, _start, _end = await _fetchable(session, db, cipher, plugins, statement.account_id,
                                           statement.period_start, statement.period_end, False)
    await _fill(session, statement, bound)
    return statement


async def fail_fetch(session: AsyncSession, statement_id: uuid.UUID, error: str) -> None:
    """Record why a queued fetch stored nothing."""
    statement = await get_scoped(session, Statement, statement_id)
    if statement is not None and statement.status == "running":
        statement.status, statement.error, statement.finished_at = "failed", error[:500], utcnow()


# ------------------------------------------------------------------------------------------ reading


def statement_out(s: Statement) -> StatementOut:
    return StatementOut(
        id=s.id, account_id=s.account_id, source=s.source, filename=s.filename, digest=s.digest, encoding=s.encoding,
        period_start=s.period_start, period_end=s.period_end, status=s.status, lines_total=s.lines_total,
        lines_new=s.lines_new, lines_repeated=s.lines_repeated, lines_rejected=s.lines_rejected,
        problems=list(s.problems or []), error=s.error, created_by=s.created_by, created_at=s.created_at,
        finished_at=s.finished_at,
    )


def line_out(ln: StatementLine) -> StatementLineOut:
    return StatementLineOut(
        id=ln.id, statement_id=ln.statement_id, line_id=ln.line_id, order_id=ln.order_id,
        order_line_id=ln.order_line_id, kind=ln.kind, amount_fen=ln.amount_fen, commission_fen=ln.commission_fen,
        occurred_at=ln.occurred_at, period=ln.period, description=ln.description, row_number=ln.row_number,
    )


async def list_statements(session: AsyncSession, *, account_id: uuid.UUID | None = None,
                          cursor: uuid.UUID | None = None, limit: int = 50) -> StatementPage:
    """Imports and fetches, newest first (of one account)."""
    stmt = select(Statement)
    if account_id is not None:
        stmt = stmt.where(Statement.account_id == account_id)
    page = await keyset_page(session, stmt, Statement.id, cursor=cursor, limit=min(limit, MAX_PAGE))
    return StatementPage([statement_out(s) for s in page.items], page.next_cursor)


async def get_statement(session: AsyncSession, statement_id: uuid.UUID) -> Statement:
    """One statement; ``404 statement_not_found``."""
    s = await get_scoped(session, Statement, statement_id)
    if s is None:
        raise NotFound("Statement not found", "对账单不存在", code="statement_not_found")
    return s


async def list_lines(session: AsyncSession, statement_id: uuid.UUID, *, cursor: uuid.UUID | None = None,
                     limit: int = 100) -> StatementLinePage:
    """The lines the statement stored, in file (or fetch) order."""
    s = await get_statement(session, statement_id)
    stmt = select(StatementLine).where(StatementLine.statement_id == s.id)
    page = await keyset_page(session, stmt, StatementLine.id, cursor=cursor, limit=min(limit, MAX_PAGE),
                             descending=False)
    return StatementLinePage([line_out(ln) for ln in page.items], page.next_cursor)
