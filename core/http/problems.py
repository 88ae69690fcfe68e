"""RFC 9457 problem+json for every error: stable ``code``, zh-CN/en ``detail``, field errors.

Never a stack trace; never a 500 for bad input.
"""

from __future__ import annotations

import html
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import TimeoutError as PoolTimeout

from core.errors import DomainError, FieldError
from core.http.locale import request_locale

log = structlog.get_logger("kaquan.http")

PROBLEM_TYPE = "https://kaquan.dev/problems/"
MEDIA_TYPE = "application/problem+json"

_HTTP_CODES: dict[int, tuple[str, str, str]] = {
    400: ("bad_request", "The request is malformed", "请求格式错误"),
    401: ("unauthorized", "Authentication is required", "需要身份认证"),
    403: ("forbidden", "You are not allowed to do this", "无权执行此操作"),
    404: ("not_found", "Not found", "资源不存在"),
    405: ("method_not_allowed", "This method is not allowed here", "不支持该请求方法"),
    409: ("conflict", "The request conflicts with the current state", "请求与当前状态冲突"),
    413: ("payload_too_large", "The request body is too large", "请求体过大"),
    415: ("unsupported_media_type", "Unsupported content type", "不支持的内容类型"),
    429: ("rate_limited", "Too many requests; slow down", "请求过于频繁，请稍后再试"),
}


def problem_body(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    errors: list[FieldError] | None = None,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The encoded problem+json body every error answer carries: ``type``, ``title``, ``status``, ``code``,
    ``detail``, then ``instance``, field ``errors`` and the error's extra members when there are any."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": title or code.replace("_", " "),
        "status": status,
        "code": code,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = [msgspec.to_builtins(e) for e in errors]
    if extra:
        body.update(extra)
    return msgspec.json.encode(body)


async def send_problem_body(
    send: Any, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Send an encoded problem+json ``body`` straight on the ASGI ``send``, with ``headers`` after the
    content type and length (middleware that answers without Litestar)."""
    start = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Response[bytes]:
    """A problem+json response (:func:`problem_body`)."""
    body = problem_body(status, code, detail, title=title, errors=errors, instance=instance, extra=extra)
    return Response(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _validation_errors(exc: ValidationException) -> tuple[str, list[FieldError]]:
    items = exc.extra if isinstance(exc.extra, list) else []
    errors: list[FieldError] = []
    malformed = False
    for item in items:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", ""))
        key = str(item.get("key") or "body")
        if "malformed" in message.lower() or "invalid json" in message.lower() or "JSON is" in message:
            malformed = True
        code = "unknown_field" if "unknown field" in message.lower() else "invalid"
        if "missing required" in message.lower():
            code = "required"
        field = key
        if "`$." in message:  # msgspec paths: "Expected `int`, got `str` - at `$.age`"
            field = message.rsplit("`$.", 1)[1].rstrip("`").strip()
        elif "unknown field `" in message.lower() or "missing required field `" in message.lower():
            field = message.split("`")[1]
        errors.append(FieldError(field=field, message=message, code=code))
    return ("malformed_json" if malformed else "validation_failed"), errors


def domain_error_handler(request: Request[Any, Any, Any], exc: DomainError) -> Response[bytes]:
    return problem(
        exc.status,
        exc.code,
        exc.detail(request_locale(request)),
        errors=exc.errors,
        headers=exc.headers,
        instance=request.url.path,
        extra=exc.extra,
    )


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    locale = request_locale(request)
    if isinstance(exc, ValidationException):
        code, errors = _validation_errors(exc)
        if code == "malformed_json":
            detail = "The request body is not valid JSON" if locale == "en" else "请求体不是有效的 JSON"
            return problem(400, code, detail, errors=errors, instance=request.url.path)
        detail = "Some fields are invalid" if locale == "en" else "部分字段无效"
        return problem(422, code, detail, errors=errors, instance=request.url.path)
    status = exc.status_code
    if status == 400 and (isinstance(exc.__cause__, SerializationException) or "json" in str(exc.detail).lower()):
        detail = "The request body is not valid JSON" if locale == "en" else "请求体不是有效的 JSON"
        return problem(400, "malformed_json", detail, instance=request.url.path)
    code, en, zh = _HTTP_CODES.get(status, ("http_error", exc.detail or "Error", exc.detail or "错误"))
    headers = dict(exc.headers or {})
    return problem(status, code, en if locale == "en" else zh, headers=headers, instance=request.url.path)


OUTAGE_RETRY_AFTER = "5"
"""Seconds a client is asked to wait when the database or the broker is unreachable."""


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (SQLAlchemy's ``orig``, ``__cause__``, ``__context__``), each once."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack and len(seen) < 20:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for inner in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(inner, BaseException):
                stack.append(inner)


def _is_bad_value(exc: BaseException) -> bool:
    """A value the database refused as data (out of range, invalid text, NUL): the client's input."""
    if isinstance(exc, (sa_exc.DataError, OverflowError, UnicodeEncodeError)):
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith("22"):  # PostgreSQL class 22: data exception
        return True
    try:
        from asyncpg.exceptions import _base as asyncpg_base
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return False
    return isinstance(exc, asyncpg_base.DataError)  # asyncpg refused an argument before sending it


def _is_outage(exc: BaseException) -> bool:
    """The database or the broker is unreachable, restarting or dropped the connection."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError)):
        return True
    if isinstance(exc, (ConnectionError, socket.gaierror, TimeoutError)):
        return True
    try:
        import asyncpg.exceptions as apg
        import redis.exceptions as rex
    except ImportError:  # pragma: no cover - both are dependencies
        return False
    return isinstance(
        exc,
        (
            apg.PostgresConnectionError,  # connection does not exist / failure / cannot connect
            apg.OperatorInterventionError,  # admin shutdown, crash shutdown, cannot connect now
            apg.InsufficientResourcesError,  # too many connections
            apg.InterfaceError,  # "connection is closed" and friends
            rex.ConnectionError,
            rex.TimeoutError,
        ),
    )


def classify_failure(exc: BaseException) -> Literal["bad_value", "outage"] | None:
    """``bad_value`` (→ 422), ``outage`` (→ 503) or ``None`` (a bug → 500) for an unexpected exception."""
    causes = list(_causes(exc))
    if any(_is_bad_value(e) for e in causes):
        return "bad_value"
    if any(_is_outage(e) for e in causes):
        return "outage"
    return None


def outage_detail(locale: str) -> str:
    return (
        "The service is temporarily unavailable (database or queue unreachable); "
        "nothing was changed. Retry shortly"
        if locale == "en"
        else "服务暂时不可用（数据库或队列无法连接），本次请求未做任何更改，请稍后重试"
    )


def status_for(exc: BaseException) -> int:
    """The status the exception handlers answer for ``exc`` (for the access log)."""
    if isinstance(exc, DomainError):
        return exc.status
    if isinstance(exc, HTTPException):
        return 422 if isinstance(exc, ValidationException) else exc.status_code
    if isinstance(exc, PoolTimeout):
        return 503
    kind = classify_failure(exc)
    return 422 if kind == "bad_value" else 503 if kind == "outage" else 500


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """A bug is a logged 500; a value the database refused is a 422; an outage is a 503 with Retry-After."""
    kind = classify_failure(exc)
    locale = request_locale(request)
    if kind == "bad_value":
        log.warning("value_refused_by_database", path=request.url.path, error_type=type(exc).__name__)
        detail = (
            "A value in the request is out of range or not valid text; nothing was changed"
            if locale == "en"
            else "请求中的某个值超出范围或不是有效文本，本次请求未做任何更改"
        )
        return problem(422, "invalid_value", detail, instance=request.url.path)
    if kind == "outage":
        log.warning("service_unavailable", path=request.url.path, error_type=type(exc).__name__)
        return problem(
            503,
            "service_unavailable",
            outage_detail(locale),
            headers={"Retry-After": OUTAGE_RETRY_AFTER},
            instance=request.url.path,
        )
    log.error("unhandled_error", path=request.url.path, error_type=type(exc).__name__, exc_info=exc)
    detail = "An internal error occurred; it was logged" if locale == "en" else "服务器内部错误，已记录"
    return problem(HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", detail, instance=request.url.path)


def busy_handler(request: Request[Any, Any, Any], exc: PoolTimeout) -> Response[bytes]:
    """No database connection came free in time: the server is overloaded, not broken. Nothing was changed."""
    log.warning("database_pool_exhausted", path=request.url.path)
    locale = request_locale(request)
    detail = (
        "The server is busy; nothing was changed. Retry shortly"
        if locale == "en"
        else "服务器繁忙，本次请求未做任何更改，请稍后重试"
    )
    return problem(503, "server_busy", detail, headers={"Retry-After": "1"}, instance=request.url.path)


EXCEPTION_HANDLERS: dict[type[Exception], Callable[[Request[Any, Any, Any], Any], Response[Any]]] = {
    DomainError: domain_error_handler,
    HTTPException: http_exception_handler,
    PoolTimeout: busy_handler,
    Exception: internal_error_handler,
}


# --- pages: the consoles and H5 answer errors as HTML ----------------------------------------------------

PAGE_REALMS: tuple[str, ...] = ("/console", "/platform", "/h5", "/c")
ExceptionHandler = Callable[[Request[Any, Any, Any], Any], Response[Any]]


def page_realm(path: str) -> str | None:
    """The page realm (``/console``, ``/platform``, ``/h5``) ``path`` belongs to, or None for the API."""
    for realm in PAGE_REALMS:
        if path == realm or path.startswith(realm + "/"):
            return realm
    return None


def _handler_for(table: Mapping[type[Exception], ExceptionHandler], exc: Exception) -> ExceptionHandler | None:
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return None


def exception_handlers_by_realm(
    pages: Mapping[str, Mapping[type[Exception], ExceptionHandler]],
) -> ExceptionHandlersMap:
    """The app's exception handlers: problem+json for the API, and the realm's HTML page for an error on
    a page path that never reached the page's router (no route matched, wrong method, a refusal raised
    before routing). Each realm's table must handle ``Exception``."""

    def dispatch(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        realm = page_realm(request.url.path)
        table = pages.get(realm) if realm else None
        handler = (_handler_for(table, exc) if table else None) or _handler_for(EXCEPTION_HANDLERS, exc)
        assert handler is not None  # EXCEPTION_HANDLERS handles Exception
        return handler(request, exc)

    types = set(EXCEPTION_HANDLERS) | {cls for table in pages.values() for cls in table}
    return dict.fromkeys(types, dispatch)


_PAGE_TITLES: dict[int, tuple[str, str]] = {
    400: ("The request could not be understood", "请求无法识别"),
    401: ("Please log in", "请先登录"),
    403: ("Access denied", "无权访问"),
    404: ("Page not found", "页面不存在"),
    413: ("The upload is too large", "上传内容过大"),
    429: ("Too many requests", "请求过于频繁"),
    503: ("Service temporarily unavailable", "服务暂时不可用"),
}


def _error_page_bytes(exc: DomainError, locale: str, realm: str) -> bytes:
    """A self-contained HTML error page (no template, no session: the request may be unreadable)."""
    en = locale == "en"
    title = _PAGE_TITLES.get(exc.status, _PAGE_TITLES[400 if exc.status < 500 else 503])[0 if en else 1]
    back = "Go to the start page" if en else "返回首页"
    home = {"/platform": "/platform", "/h5": "/h5/me"}.get(realm, "/console")
    return (
        f'<!doctype html><html lang="{"en" if en else "zh-CN"}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body><main>"
        f'<p class="error-code">{exc.status}</p><h1>{html.escape(title)}</h1>'
        f"<p data-error-message>{html.escape(exc.detail(locale))}</p>"
        f'<p><a href="{home}">{back}</a></p></main></body></html>'
    ).encode()


async def send_problem_asgi(
    send: Any,
    exc: DomainError,
    locale: str,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    *,
    path: str = "",
) -> None:
    """Answer ``exc`` straight on the ASGI ``send`` (middleware that refuses a request before Litestar
    routes it): problem+json, the same body as :func:`problem`, plus the error's own headers; on a page
    path (:func:`page_realm`) a readable HTML page instead."""
    if (realm := page_realm(path)) is not None:
        page = _error_page_bytes(exc, locale, realm)
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(page)).encode()),
        ]
        headers += [(k.lower().encode(), str(v).encode()) for k, v in (exc.headers or {}).items()]
        headers += extra_headers or []
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": page})
        return
    encoded = problem_body(exc.status, exc.code, exc.detail(locale), errors=exc.errors)
    headers = [(k.lower().encode(), str(v).encode()) for k, v in (exc.headers or {}).items()]
    headers += extra_headers or []
    if exc.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="kaquan"'))
    await send_problem_body(send, exc.status, encoded, headers)
