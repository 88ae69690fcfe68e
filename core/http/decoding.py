"""One request-decoding layer for every route, present and future.

- :func:`request_guard_middleware` (ASGI, before the handler): refuses a NUL character in the path, a
  query parameter or a header, and a query string that is not UTF-8 (``400``).
- :class:`KaquanRequest` (the app's request class): ``form()`` refuses NUL in a form field or an upload's
  filename, and a field that is not valid text in its charset (``400 invalid_form_encoding``);
  ``json()`` refuses excessive nesting and NUL for handlers that read the body themselves.
- :func:`decode_request_body` (the app's ``before_request`` hook): for a handler that takes ``data``
  as JSON, insists on a JSON content type (``415``) and on a body when one is required (``400
  body_required``), checks nesting depth cheaply before decoding (``400 json_too_deep``), refuses NUL
  (``400 nul_character``), integers beyond 64 bits (``422``), and decodes the body *strictly* against the
  handler's type (no ``"5"`` for ``5``, no ``25.00`` for an amount): ``422 validation_failed`` with the
  field named. Integer query and path parameters are range-checked the same way. Query and path
  parameters arrive as text and are still parsed by Litestar.

Upload *content* (a file's bytes) may contain 0x00; only names, fields and text are refused.
Litestar runs only the innermost ``before_request`` of a route's layers: a router or controller that
needs its own hook must call :func:`decode_request_body` first (a test checks every route).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote_to_bytes

import msgspec
from litestar import Request
from litestar.datastructures import FormMultiDict, UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import BodyKwarg, ParameterKwarg
from litestar.typing import FieldDefinition

from core.errors import DomainError, FieldError, ValidationFailed
from core.http.locale import scope_locale
from core.http.problems import send_problem_asgi
from core.validation import MONEY_MARK

MAX_JSON_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_NUL_ESCAPE = b"\\u0000"
_LONG_INT = re.compile(rb"\d{19}")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_MSGSPEC_PATH = re.compile(r" - at `\$(.*)`$")


class BadRequest(DomainError):
    status, code = 400, "bad_request"


class UnsupportedMediaType(DomainError):
    status, code = 415, "unsupported_media_type"


def nul_refused(field: str) -> BadRequest:
    """``400 nul_character`` naming where the NUL was found."""
    return BadRequest(
        f"A NUL character (U+0000) is not allowed (in {field})",
        f"不允许包含 NUL 字符（U+0000）（位于 {field}）",
        code="nul_character",
        errors=[FieldError(field=field, message="NUL character (U+0000) is not allowed", code="nul_character")],
    )


def _out_of_range(field: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: the number is out of range (a 64-bit integer at most)",
        f"{field}：数值超出范围（最多为 64 位整数）",
        errors=[
            FieldError(field=field, message=f"must be between {INT64_MIN} and {INT64_MAX}", code="out_of_range")
        ],
    )


# --- JSON checks -------------------------------------------------------------------------------------


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays/objects in ``body`` (strings skipped), without decoding it."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return 0  # cannot be deeper than the limit: the common case costs two C-level counts
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for b in brackets:
        if b in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    return deepest
        else:
            depth -= 1
    return deepest


def check_json_depth(body: bytes) -> None:
    if json_depth(body) > MAX_JSON_DEPTH:
        raise BadRequest(
            f"The JSON body is nested too deeply (at most {MAX_JSON_DEPTH} levels)",
            f"JSON 请求体嵌套过深（最多 {MAX_JSON_DEPTH} 层）",
            code="json_too_deep",
        )


def _walk(value: Any, path: str) -> tuple[str, str] | None:
    """The first (path, problem) in a decoded JSON value: a string with NUL or an integer beyond int64."""
    if isinstance(value, str):
        return (path or "body", "nul") if "\x00" in value else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else (path or "body", "range")
    if isinstance(value, list):
        for i, item in enumerate(value):
            if found := _walk(item, f"{path}[{i}]"):
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return name, "nul"
            if found := _walk(item, name):
                return found
    return None


def check_json_values(body: bytes, parsed: Any = msgspec.UNSET) -> None:
    """Refuse NUL in any string (or key) and integers outside int64, naming the field."""
    if _NUL_ESCAPE not in body and not _LONG_INT.search(body):
        return  # neither can be present: no walk
    if parsed is msgspec.UNSET:
        try:
            parsed = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return  # malformed JSON is reported by the decoder that follows
    found = _walk(parsed, "")
    if found is None:
        return
    field, problem = found
    raise nul_refused(field) if problem == "nul" else _out_of_range(field)


# --- money ---------------------------------------------------------------------------------------------



def _money_at(t: msgspec.inspect.Type, parts: list[str | int]) -> msgspec.inspect.IntType | None:
    """The integer type of the money (``Fen``) field at ``parts`` of the type ``t``, else ``None``."""
    for part in parts:
        while True:
            if isinstance(t, msgspec.inspect.Metadata):
                t = t.type
            elif isinstance(t, msgspec.inspect.UnionType):
                inner = [x for x in t.types if not isinstance(x, msgspec.inspect.NoneType)]
                if len(inner) != 1:
                    return None
                t = inner[0]
            else:
                break
        if isinstance(part, int) and isinstance(
            t, (msgspec.inspect.ListType, msgspec.inspect.SetType, msgspec.inspect.VarTupleType)
        ):
            t = t.item_type
        elif isinstance(part, str) and isinstance(t, (msgspec.inspect.StructType, msgspec.inspect.TypedDictType)):
            match = next((f for f in t.fields if f.encode_name == part), None)
            if match is None:
                return None
            t = match.type
        elif isinstance(part, str) and isinstance(t, msgspec.inspect.DictType):
            t = t.value_type
        else:
            return None
    while isinstance(t, msgspec.inspect.UnionType):
        inner = [x for x in t.types if not isinstance(x, msgspec.inspect.NoneType)]
        if len(inner) != 1:
            return None
        t = inner[0]
    if isinstance(t, msgspec.inspect.Metadata) and (t.extra or {}).get(MONEY_MARK):
        return t.type if isinstance(t.type, msgspec.inspect.IntType) else None
    return None


def _parts(path: str) -> list[str | int]:
    """``.items[0].unit_cost`` → ``["items", 0, "unit_cost"]``."""
    out: list[str | int] = []
    for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        out.append(int(index) if index else name)
    return out


def _value_at(value: Any, parts: list[str | int]) -> Any:
    for part in parts:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def money_hint(value: Any, low: int | None = None, high: int | None = None) -> tuple[str, str]:
    """The right form for an amount given as ``value`` (bounds ``low``..``high`` fen): (en, zh)."""
    if isinstance(value, int) and not isinstance(value, bool):  # an integer, but out of range
        low, high = low or 0, high or INT64_MAX
        return (
            f"amounts are integers in fen from {low} to {high} (¥{Decimal(high) / 100:,.2f})",
            f"金额以分为单位的整数，范围 {low} 至 {high}（¥{Decimal(high) / 100:,.2f}）",
        )
    fen: int | None = None
    quoted = isinstance(value, str)
    shown = value if not quoted or len(value) <= 24 else value[:24] + "…"
    try:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            number = Decimal(str(value).strip())
            fen = int(number) if quoted and number == number.to_integral_value() else int(
                (number * 100).to_integral_value()
            )
    except (InvalidOperation, ValueError, OverflowError):
        fen = None
    if fen is None or fen < 0:
        fen = 2500
    yuan = f"{Decimal(fen) / 100:.2f}"
    if quoted:
        return (
            f"amounts are integers in fen, sent as a JSON number: send {fen} (not \"{shown}\") for ¥{yuan}",
            f"金额以分为单位的整数（JSON 数字）：¥{yuan} 请填写 {fen}（不要写成 \"{shown}\"）",
        )
    return (
        f"amounts are integers in fen: send {fen} for ¥{yuan}",
        f"金额以分为单位的整数：¥{yuan} 请填写 {fen}",
    )


# --- strict decoding of a handler's ``data`` -------------------------------------------------------


def _field_error(message: str) -> FieldError:
    """A msgspec validation message as a field error (``Expected `int`, got `str` - at `$.quantity```)."""
    field, lowered = "body", message.lower()
    if match := _MSGSPEC_PATH.search(message):
        field = match.group(1).lstrip(".") or "body"
    code = "invalid"
    if "unknown field `" in lowered or "missing required field `" in lowered:
        name = message.split("`")[1]
        field = f"{field}.{name}" if field != "body" else name
        code = "unknown_field" if "unknown field" in lowered else "required"
    return FieldError(field=field, message=_MSGSPEC_PATH.sub("", message), code=code)


class _BodySpec(msgspec.Struct):
    decoder: msgspec.json.Decoder[Any] | None
    info: Any
    required: bool
    json: bool


_SPECS: dict[int, tuple[Any, _BodySpec | None, list[tuple[str, str]]]] = {}


def _int_field(fd: FieldDefinition) -> bool:
    types = [t.annotation for t in fd.inner_types if not t.is_none_type] if fd.is_union else [fd.annotation]
    return any(t is int for t in types)


def _spec(handler: Any) -> tuple[_BodySpec | None, list[tuple[str, str]]]:
    """What the handler decodes (cached per handler): its JSON ``data`` type and its integer parameters."""
    cached = _SPECS.get(id(handler))
    if cached is not None and cached[0] is handler:
        return cached[1], cached[2]
    params = handler.parsed_fn_signature.parameters
    ints: list[tuple[str, str]] = []
    for name, fd in params.items():
        if name == "data" or not _int_field(fd):
            continue
        kwarg = fd.kwarg_definition
        if isinstance(kwarg, ParameterKwarg):
            if kwarg.header or kwarg.cookie or kwarg.le is not None or kwarg.lt is not None:
                continue
            ints.append((kwarg.query or name, "query"))
        else:
            ints.append((name, "any"))
    spec: _BodySpec | None = None
    data = params.get("data")
    if data is not None:
        kwarg = data.kwarg_definition
        media = kwarg.media_type if isinstance(kwarg, BodyKwarg) else RequestEncodingType.JSON
        is_json = media == RequestEncodingType.JSON and handler.resolve_data_dto() is None
        required = not (data.is_optional or data.has_default)
        decoder = None
        info = None
        if is_json and data.annotation is not Any:
            decoder = msgspec.json.Decoder(
                data.annotation, strict=True, dec_hook=handler.default_deserializer
            )
            try:
                info = msgspec.inspect.type_info(data.annotation)
            except TypeError:  # a type msgspec cannot describe has no money fields
                info = None
        spec = _BodySpec(decoder=decoder, info=info, required=required, json=is_json)
    _SPECS[id(handler)] = (handler, spec, ints)
    return spec, ints


def is_json_media(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def _check_int_params(request: Request[Any, Any, Any], ints: list[tuple[str, str]]) -> None:
    for name, where in ints:
        raw: Any = None
        if where == "any" and name in request.path_params:
            raw = request.path_params[name]
        else:
            raw = request.query_params.get(name)
        if raw is None:
            continue
        try:
            number = int(raw)
        except (TypeError, ValueError):
            continue  # not a number: the signature model reports it
        if not INT64_MIN <= number <= INT64_MAX:
            raise _out_of_range(name)


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def _check_raw_body(request: Request[Any, Any, Any], content_type: str) -> None:
    """A handler that reads its body itself: JSON is still checked for depth and NUL, a URL-encoded
    form for NUL (``/oauth/token``); multipart forms are checked when read (:class:`KaquanRequest`)."""
    if is_json_media(content_type):
        body = await request.body()
        if body:
            check_json_depth(body)
            check_json_values(body)
    elif content_type == RequestEncodingType.URL_ENCODED:
        body = await request.body()
        if b"\x00" in body or b"%00" in body:
            raise nul_refused(_query_nul_field(body) or "body")


async def decode_request_body(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook: strict, safe decoding of the handler's JSON ``data`` and integer params."""
    spec, ints = _spec(request.route_handler)
    if ints:
        _check_int_params(request, ints)
    if request.method not in _BODY_METHODS:
        return
    content_type = request.content_type[0]
    if spec is None or not spec.json:
        await _check_raw_body(request, content_type)
        return
    body = await request.body()
    if not body.strip():
        if spec.required:
            raise BadRequest(
                "This request needs a JSON body (Content-Type: application/json)",
                "此请求需要 JSON 请求体（Content-Type: application/json）",
                code="body_required",
            )
        return
    if not is_json_media(content_type):
        raise UnsupportedMediaType(
            f"Send this request as JSON (Content-Type: application/json), not {content_type or 'no type'}",
            f"请以 JSON 发送此请求（Content-Type: application/json），而不是 {content_type or '未声明类型'}",
        )
    check_json_depth(body)
    check_json_values(body)
    if spec.decoder is None:
        return
    try:
        spec.decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _strict_failure(str(exc), body, spec.info) from None
    except msgspec.DecodeError:
        raise BadRequest(
            "The request body is not valid JSON", "请求体不是有效的 JSON", code="malformed_json"
        ) from None


def _strict_failure(message: str, body: bytes, info: Any) -> ValidationFailed:
    error = _field_error(message)
    match = _MSGSPEC_PATH.search(message)
    if info is not None and match and error.code == "invalid":
        parts = _parts(match.group(1))
        money = _money_at(info, parts)
        if money is not None:
            try:
                given = _value_at(msgspec.json.decode(body), parts)
            except msgspec.DecodeError:
                given = None
            en, zh = money_hint(given, money.ge, money.le)
            error = FieldError(field=error.field, message=en, code="integer_fen")
            return ValidationFailed(f"{error.field}: {en}", f"{error.field}：{zh}", errors=[error])
    return ValidationFailed("Some fields are invalid", "部分字段无效", errors=[error])


# --- the request class -------------------------------------------------------------------------------


def check_form(form: FormMultiDict) -> None:
    """Refuse NUL in any form field name or value and in any upload's filename (not in file content)."""
    for key, value in form.multi_items():
        if "\x00" in key:
            raise nul_refused("form")
        if isinstance(value, str) and "\x00" in value:
            raise nul_refused(key)
        if isinstance(value, UploadFile) and "\x00" in (value.filename or ""):
            raise nul_refused(f"{key}.filename")


class KaquanRequest(Request[Any, Any, Any]):
    """The app's request: forms and JSON read through it are refused NUL and excessive depth."""

    async def form(self) -> FormMultiDict:
        try:
            form = await super().form()
        except (UnicodeDecodeError, LookupError):  # a field's bytes not in its (or an unknown) charset
            raise BadRequest(
                "A form field is not valid text in its character set (UTF-8 unless the part says otherwise)",
                "表单字段不是有效的文本（除非另有声明，应为 UTF-8 编码）",
                code="invalid_form_encoding",
                errors=[FieldError(field="form", message="not valid text", code="invalid_encoding")],
            ) from None
        check_form(form)
        return form

    async def json(self) -> Any:
        body = await self.body()
        check_json_depth(body)
        value = await super().json()
        check_json_values(body, value)
        return value


# --- the ASGI guard ------------------------------------------------------------------------------------


def _query_nul_field(query: bytes) -> str | None:
    for pair in query.replace(b";", b"&").split(b"&"):
        name, _, value = pair.partition(b"=")
        if b"\x00" in unquote_to_bytes(name.replace(b"+", b" ")):
            return "query"
        if b"\x00" in unquote_to_bytes(value.replace(b"+", b" ")):
            return unquote_to_bytes(name).decode("utf-8", "replace") or "query"
    return None


def _guard(scope: dict[str, Any]) -> DomainError | None:
    if "\x00" in scope.get("path", ""):
        return nul_refused("path")
    query: bytes = scope.get("query_string", b"")
    if query:
        if b"\x00" in query or b"%00" in query:
            return nul_refused(_query_nul_field(query) or "query")
        try:
            unquote_to_bytes(query.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return BadRequest(
                "The query string is not valid UTF-8",
                "查询参数不是有效的 UTF-8 编码",
                code="invalid_query",
                errors=[FieldError(field="query", message="not valid UTF-8", code="invalid_encoding")],
            )
    for name, value in scope.get("headers", []):
        if b"\x00" in value:
            return nul_refused("header:" + name.decode("latin-1"))
    return None


def request_guard_middleware(app: Any) -> Any:
    """Refuse NUL in the path, the query and headers, and a query that is not UTF-8, before any handler."""

    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and (refusal := _guard(scope)) is not None:
            await send_problem_asgi(send, refusal, scope_locale(scope), path=scope.get("path", ""))
            return
        await app(scope, receive, send)

    return middleware
