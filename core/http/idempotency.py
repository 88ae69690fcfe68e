"""``Idempotency-Key`` with Stripe semantics, for POSTs under ``/api/v1``.

The first response to a (principal, key) is stored for 24 h and replayed byte-identical; a request with
the same key while the first still runs gets 409; the same key with a different body gets 422.
The pending row is written in the request's own transaction before the handler runs, and the response is
stored in that same transaction: the change and its stored answer commit together. A concurrent request
with the same key waits on the key's unique index and then replays the answer (or gets 409 if a handler
that commits part-way is still running).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import uuid
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.ids import new_id
from core.errors import Conflict, DomainError, ValidationFailed
from core.http.locale import scope_locale
from core.http.models import IdempotencyRecord
from core.http.problems import send_problem_asgi

TTL = dt.timedelta(hours=24)
MAX_KEY_LENGTH = 255
_SKIP_HEADERS = {b"content-length", b"date", b"server", b"x-request-id", b"set-cookie"}


def idempotency_middleware(app: Any) -> Any:
    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith("/api/v1/"):
            await app(scope, receive, send)
            return
        key = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"idempotency-key"), None)
        principal = scope.get("state", {}).get("principal")
        if key is None or principal is None:
            await app(scope, receive, send)
            return
        locale = scope_locale(scope)
        if not key.strip() or len(key) > MAX_KEY_LENGTH:
            invalid = ValidationFailed(
                f"Idempotency-Key must be 1–{MAX_KEY_LENGTH} characters",
                f"Idempotency-Key 长度须为 1–{MAX_KEY_LENGTH} 个字符",
                code="invalid_idempotency_key",
                status=400,
            )
            await send_problem_asgi(send, invalid, locale)
            return
        kernel = scope["app"].state.kernel
        body = await _read_body(receive, send, kernel.settings.max_body_bytes, locale)
        if body is None:
            return
        fingerprint = hashlib.sha256(
            scope["method"].encode() + b" " + scope["path"].encode() + b"\n" + body
        ).hexdigest()
        who = f"{principal.kind}:{principal.subject_id}"
        session: AsyncSession = scope["state"]["db"]
        record_id, existing = await _claim(session, who, key, scope, fingerprint)
        if existing is not None:
            body_out = b""
            if existing.status == "complete" and existing.response_body:
                cipher = await kernel.keys.cipher(session)
                body_out = cipher.decrypt(existing.response_body, aad=_aad(existing.id))
            session.expunge(existing)  # keep its loaded values through the rollback
            await session.rollback()
            await _answer_existing(existing, fingerprint, locale, send, body_out)
            return

        async def replay_receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        held = _HeldResponse(send, session, kernel, record_id)
        try:
            await app(scope, replay_receive, held.send)
        except BaseException:  # boundary: request middleware cleanup, re-raised (cancellation too)
            await session.rollback()  # end the request's transaction (on SQLite it holds the write lock)
            await _forget(kernel, record_id)
            raise
        status = int(held.start.get("status", 500)) if held.sent else 500
        if status < 400 and scope["state"].get("kaquan_committed", True):
            return
        if status < 500 and not scope["state"].get("kaquan_aborted"):
            # A refusal (4xx) rolled the request back; its answer is kept on its own, like Stripe's.
            await _store_refusal(
                kernel, who, key, scope, fingerprint, status, held.start, b"".join(held.parts)
            )
            return
        await session.rollback()
        await _forget(kernel, record_id)  # nothing happened: the client may retry with the same key

    return middleware


async def _read_body(receive: Any, send: Any, limit: int, locale: str) -> bytes | None:
    """The whole request body; None when the client left or the body is over ``limit`` (answered 413)."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            too_large = DomainError(
                f"The request body is larger than {limit} bytes",
                f"请求体超过 {limit} 字节上限",
                code="payload_too_large",
                status=413,
            )
            await send_problem_asgi(send, too_large, locale)
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


class _HeldResponse:
    """The handler's response, held until it is complete, then stored in the request's own transaction
    (a success) before it is passed on. The request pipeline commits that transaction when the held
    response start is passed on: the change and its stored answer are committed together or not at all."""

    def __init__(self, send: Any, session: AsyncSession, kernel: Any, record_id: uuid.UUID) -> None:
        self._send, self._session, self._kernel, self._record_id = send, session, kernel, record_id
        self.start: dict[str, Any] = {}
        self.parts: list[bytes] = []
        self.sent = False

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.start.update(message)
            return
        if message["type"] != "http.response.body":
            await self._send(message)
            return
        self.parts.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        status = int(self.start.get("status", 500))
        if status < 400:
            await _complete(
                self._session, self._kernel, self._record_id, status, self.start, b"".join(self.parts)
            )
        self.sent = True
        await self._send(self.start)
        await self._send({"type": "http.response.body", "body": b"".join(self.parts)})


def _upsert(dialect: str) -> Any:
    return pg_insert if dialect == "postgresql" else sqlite_insert


_COLUMNS = (
    "id",
    "principal",
    "key",
    "method",
    "path",
    "request_hash",
    "expires_at",
    "created_at",
)


def _record_values(
    record_id: uuid.UUID, who: str, key: str, scope: dict[str, Any], fingerprint: str, now: dt.datetime
) -> dict[str, Any]:
    """The columns every stored record has (``_COLUMNS``)."""
    return {
        "id": record_id,
        "principal": who,
        "key": key,
        "method": scope["method"],
        "path": scope["path"],
        "request_hash": fingerprint,
        "expires_at": now + TTL,
        "created_at": now,
    }


@functools.lru_cache(maxsize=4)
def _claim_statement(dialect: str) -> Any:
    """Insert a pending record, or take over an expired one; returns its id (none if a live one exists).

    Built once per dialect: building an upsert costs more CPU than running it.
    """
    table = IdempotencyRecord.__table__
    values: dict[str, Any] = {c: bindparam(c, type_=table.c[c].type) for c in _COLUMNS}
    insert = _upsert(dialect)(table).values(status="pending", response_headers=[], **values)
    replace = {c: insert.excluded[c] for c in (*_COLUMNS, "status", "response_headers")}
    for c in ("principal", "key"):
        replace.pop(c)
    return insert.on_conflict_do_update(
        index_elements=[table.c.tenant_id, table.c.principal, table.c.key],
        set_=replace | {"response_status": None, "response_body": None},
        where=table.c.expires_at <= bindparam("now", type_=table.c.expires_at.type),
    ).returning(table.c.id)


async def _claim(
    session: AsyncSession, who: str, key: str, scope: dict[str, Any], fingerprint: str
) -> tuple[uuid.UUID, IdempotencyRecord | None]:
    """Insert a pending row for the key in the request's transaction (ours to run), or return the row
    another request holds. A concurrent request with the same key waits on the unique index until this
    one's transaction ends, then reads the stored answer."""
    now = utcnow()
    record_id = new_id()
    params = _record_values(record_id, who, key, scope, fingerprint, now) | {"now": now}
    statement = _claim_statement(session.get_bind().dialect.name)
    connection = await session.connection()  # Core on the connection: no ORM execution overhead
    claimed = (await connection.execute(statement, params)).scalar_one_or_none()
    if claimed is not None:
        return claimed, None
    existing = (
        await session.execute(
            select(IdempotencyRecord)
            .where(IdempotencyRecord.principal == who, IdempotencyRecord.key == key)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    return record_id, existing


@functools.lru_cache(maxsize=1)
def _complete_statement() -> Any:
    table = IdempotencyRecord.__table__
    c = table.c
    return (
        update(table)
        .where(
            c.tenant_id == bindparam("tenant", type_=c.tenant_id.type),
            c.id == bindparam("record_id", type_=c.id.type),
        )
        .values(
            status="complete",
            response_status=bindparam("response_status", type_=c.response_status.type),
            response_headers=bindparam("headers", type_=c.response_headers.type),
            response_body=bindparam("body", type_=c.response_body.type),
        )
    )


async def _complete(
    session: AsyncSession, kernel: Any, record_id: uuid.UUID, status: int, start: dict[str, Any], body: bytes
) -> None:
    # Responses can hold credentials (an invite link): kept encrypted under the tenant's key.
    cipher = await kernel.keys.cipher(session)
    connection = await session.connection()
    await connection.execute(
        _complete_statement(),
        {
            "tenant": require_tenant(),
            "record_id": record_id,
            "response_status": status,
            "headers": _kept_headers(start),
            "body": cipher.encrypt(body, aad=_aad(record_id)),
        },
    )


async def _store_refusal(
    kernel: Any,
    who: str,
    key: str,
    scope: dict[str, Any],
    fingerprint: str,
    status: int,
    start: dict[str, Any],
    body: bytes,
) -> None:
    """Keep a 4xx answer (its transaction was rolled back) so a retry with the key gets it again."""
    async with kernel.db.transaction() as s:
        table = IdempotencyRecord.__table__
        now = utcnow()
        record_id = new_id()
        cipher = await kernel.keys.cipher(s)
        values = _record_values(record_id, who, key, scope, fingerprint, now) | {
            "status": "complete",
            "response_status": status,
            "response_headers": _kept_headers(start),
            "response_body": cipher.encrypt(body, aad=_aad(record_id)),
        }
        insert = _upsert(s.get_bind().dialect.name)(table).values(values)
        await s.execute(insert.on_conflict_do_nothing())


def _kept_headers(start: dict[str, Any]) -> list[list[str]]:
    return [
        [k.decode("latin-1"), v.decode("latin-1")]
        for k, v in start.get("headers", [])
        if k.lower() not in _SKIP_HEADERS
    ]


def _aad(record_id: uuid.UUID) -> bytes:
    return b"idempotency:" + record_id.bytes


async def _answer_existing(
    existing: IdempotencyRecord, fingerprint: str, locale: str, send: Any, body: bytes
) -> None:
    if existing.request_hash != fingerprint:
        reused = ValidationFailed(
            "This Idempotency-Key was used with a different request",
            "该 Idempotency-Key 已用于另一个不同的请求",
            code="idempotency_key_reused",
        )
        await send_problem_asgi(send, reused, locale)
        return
    if existing.status != "complete":
        busy = Conflict(
            "A request with this Idempotency-Key is still in progress; retry later",
            "使用该 Idempotency-Key 的请求仍在处理中，请稍后重试",
            code="idempotency_in_progress",
        )
        await send_problem_asgi(send, busy, locale, [(b"retry-after", b"1")])
        return
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in existing.response_headers]
    headers += [(b"content-length", str(len(body)).encode()), (b"idempotent-replayed", b"true")]
    await send({"type": "http.response.start", "status": existing.response_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _forget(kernel: Any, record_id: Any) -> None:
    async with kernel.db.transaction() as s:
        await s.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))
