"""``Idempotency-Key`` with Stripe semantics, for POSTs under ``/api/v1``.

The first response to a (principal, key) is stored for 24 h and replayed byte-identical; a request with
the same key while the first still runs gets 409; the same key with a different body gets 422.
The pending row is committed before the handler runs (it is the lock); the response is stored only
once the handler's own transaction has committed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from core.db.base import utcnow
from core.http.models import IdempotencyRecord

TTL = dt.timedelta(hours=24)
MAX_KEY_LENGTH = 255
_SKIP_HEADERS = {b"content-length", b"date", b"server", b"x-request-id", b"set-cookie"}


def _problem(status: int, code: str, en: str, zh: str, locale: str) -> tuple[int, bytes]:
    body = {
        "type": f"https://kaquan.dev/problems/{code}",
        "title": code.replace("_", " "),
        "status": status,
        "code": code,
        "detail": zh if locale.startswith("zh") else en,
    }
    return status, msgspec.json.encode(body)


async def _send_simple(
    send: Any, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


def _locale(scope: dict[str, Any]) -> str:
    for k, v in scope["headers"]:
        if k == b"accept-language" and v.lower().startswith(b"en"):
            return "en"
    return "zh-CN"


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
        locale = _locale(scope)
        if not key.strip() or len(key) > MAX_KEY_LENGTH:
            await _send_simple(
                send,
                *_problem(
                    400,
                    "invalid_idempotency_key",
                    f"Idempotency-Key must be 1–{MAX_KEY_LENGTH} characters",
                    f"Idempotency-Key 长度须为 1–{MAX_KEY_LENGTH} 个字符",
                    locale,
                ),
            )
            return
        kernel = scope["app"].state.kernel
        limit = kernel.settings.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send_simple(
                    send,
                    *_problem(
                        413,
                        "payload_too_large",
                        f"The request body is larger than {limit} bytes",
                        f"请求体超过 {limit} 字节上限",
                        locale,
                    ),
                )
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        fingerprint = hashlib.sha256(
            scope["method"].encode() + b" " + scope["path"].encode() + b"\n" + body
        ).hexdigest()
        who = f"{principal.kind}:{principal.subject_id}"
        rec, existing = await _claim(kernel, who, key, scope, fingerprint)
        if existing is not None:
            body_out = b""
            if existing.status == "complete" and existing.response_body:
                async with kernel.db.transaction() as s:
                    cipher = await kernel.keys.cipher(s)
                body_out = cipher.decrypt(existing.response_body, aad=_aad(existing))
            await _answer_existing(existing, fingerprint, locale, send, body_out)
            return

        captured: dict[str, Any] = {"status": None, "headers": [], "body": []}

        async def replay_receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def capture_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = [
                    [k.decode("latin-1"), v.decode("latin-1")]
                    for k, v in message.get("headers", [])
                    if k.lower() not in _SKIP_HEADERS
                ]
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
            await send(message)

        try:
            await app(scope, replay_receive, capture_send)
        except BaseException:
            await _forget(kernel, rec.id)
            raise
        committed = scope.get("state", {}).get("kaquan_committed", True)
        status = captured["status"] or 500
        if not committed or status >= 500:
            await _forget(kernel, rec.id)  # nothing happened: the client may retry with the same key
            return
        async with kernel.db.transaction() as s:
            row = await s.get(IdempotencyRecord, (rec.tenant_id, rec.id))
            if row is not None:
                row.status = "complete"
                row.response_status = status
                row.response_headers = captured["headers"]
                # Responses can hold credentials (an invite link): kept encrypted under the tenant's key.
                cipher = await kernel.keys.cipher(s)
                row.response_body = cipher.encrypt(b"".join(captured["body"]), aad=_aad(row))

    return middleware


async def _claim(
    kernel: Any, who: str, key: str, scope: dict[str, Any], fingerprint: str
) -> tuple[IdempotencyRecord | None, IdempotencyRecord | None]:
    """Commit a pending row for the key (ours to run), or return the row another request holds."""
    for _ in range(3):
        now = utcnow()
        try:
            async with kernel.db.transaction() as s:
                existing = (
                    await s.execute(
                        select(IdempotencyRecord).where(
                            IdempotencyRecord.principal == who, IdempotencyRecord.key == key
                        )
                    )
                ).scalar_one_or_none()
                if existing is not None and existing.expires_at > now:
                    return None, existing
                if existing is not None:
                    await s.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == existing.id))
                rec = IdempotencyRecord(
                    principal=who,
                    key=key,
                    method=scope["method"],
                    path=scope["path"],
                    request_hash=fingerprint,
                    status="pending",
                    expires_at=now + TTL,
                )
                s.add(rec)
            return rec, None
        except IntegrityError:
            continue  # a concurrent request inserted the same key first: read it back
    raise RuntimeError("could not claim the idempotency key")


def _aad(row: IdempotencyRecord) -> bytes:
    return b"idempotency:" + row.id.bytes


async def _answer_existing(
    existing: IdempotencyRecord, fingerprint: str, locale: str, send: Any, body: bytes
) -> None:
    if existing.request_hash != fingerprint:
        await _send_simple(
            send,
            *_problem(
                422,
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different request",
                "该 Idempotency-Key 已用于另一个不同的请求",
                locale,
            ),
        )
        return
    if existing.status != "complete":
        await _send_simple(
            send,
            *_problem(
                409,
                "idempotency_in_progress",
                "A request with this Idempotency-Key is still in progress; retry later",
                "使用该 Idempotency-Key 的请求仍在处理中，请稍后重试",
                locale,
            ),
            [(b"retry-after", b"1")],
        )
        return
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in existing.response_headers]
    headers += [(b"content-length", str(len(body)).encode()), (b"idempotent-replayed", b"true")]
    await send({"type": "http.response.start", "status": existing.response_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _forget(kernel: Any, record_id: Any) -> None:
    async with kernel.db.transaction() as s:
        await s.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))
