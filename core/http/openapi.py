"""The served OpenAPI document as the API's contract.

``openapi_config()`` declares the security schemes (OAuth2 client credentials with every scope of
``tenants.scopes.SCOPES``, the operator bearer token, HTTP Basic for the token endpoint) and
``document_api(app)`` walks the registered routes once, before the document is first built, and gives
every operation, through Litestar's own handler attributes:

- ``security``: the scopes its ``require_scope`` guards demand, or the operator bearer token;
- ``responses``: every error status it can answer, as ``application/problem+json`` with the one
  ``ProblemDetails`` schema (replacing Litestar's default 400 shape), derived from what the request
  pipeline does for that kind of route (see ``error_statuses``);
- through an ``operation_class``: ``Retry-After`` / ``WWW-Authenticate`` on the errors that send them,
  and a ``requestBody`` for the handlers that read their body themselves (the token form, the uploads).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Litestar
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import (
    Components,
    OAuthFlow,
    OAuthFlows,
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.routes import HTTPRoute

from core.http.problems import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from tenants.guards import require_operator, require_scope
from tenants.scopes import SCOPES

OAUTH2 = "oauth2"
OPERATOR_BEARER = "operatorBearer"
CLIENT_BASIC = "clientBasic"
TOKEN_URL = "/oauth/token"


class ProblemFieldError(msgspec.Struct):
    """One invalid field of a request."""

    field: str
    message: str
    code: str = "invalid"


class ProblemDetails(msgspec.Struct):
    """RFC 9457 problem details; some problems add members of their own (e.g. ``required_scope``)."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    instance: str | None = None
    errors: list[ProblemFieldError] | None = None


class TokenResponse(msgspec.Struct):
    """An RFC 6749 §5.1 access token response."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str


#: What each error status means, shown as the response's description.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request (bad JSON, bad header, bad encoding, bad Idempotency-Key)",
    401: "Not authenticated: missing, invalid, expired or revoked credentials",
    403: "The token lacks the required scope, the tenant is suspended or a quota is used up",
    404: "No such resource in this tenant",
    409: "Conflicts with the current state (already done, taken, in progress, out of stock …)",
    413: "The request body is too large",
    415: "Unsupported request content type",
    422: "Some fields are invalid (see ``errors``), or an Idempotency-Key was reused for another request",
    423: "Locked after repeated failures; retry after ``Retry-After`` seconds",
    429: "Rate limited or refused by a risk rule; retry after ``Retry-After`` seconds",
    503: "Temporarily unavailable (database or broker busy or away); nothing was changed, retry after "
    "``Retry-After`` seconds",
}

#: Handler arguments Litestar fills itself (not request parameters).
_RESERVED_KWARGS = frozenset({"data", "request", "socket", "state", "scope", "headers", "cookies", "query", "body"})
_SCOPE_GUARD_CODE = require_scope("tenant:read").__code__


def _guards(handler: HTTPRouteHandler) -> list[Any]:
    """The guard functions of ``handler`` and its layers (Litestar wraps them in ``AsyncCallable``)."""
    return [getattr(guard, "func", guard) for guard in handler.resolve_guards()]


def guard_scopes(handler: HTTPRouteHandler) -> list[str]:
    """The scopes demanded by the ``require_scope`` guards of ``handler`` (all layers)."""
    scopes = [
        inspect.getclosurevars(guard).nonlocals["scope"]
        for guard in _guards(handler)
        if getattr(guard, "__code__", None) is _SCOPE_GUARD_CODE
    ]
    return sorted(set(scopes))


def needs_operator(handler: HTTPRouteHandler) -> bool:
    """Whether ``handler`` is for platform operators only."""
    return any(guard is require_operator for guard in _guards(handler))


@dataclass(frozen=True)
class BodySpec:
    """What a handler that reads its own body accepts, and any extra response media types."""

    content: dict[str, Schema | Reference]
    description: str
    extra_error_content: dict[int, dict[str, Schema | Reference]] | None = None


def _binary(description: str) -> Schema:
    return Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY, description=description)


def _text(description: str, **kw: Any) -> Schema:
    return Schema(type=OpenAPIType.STRING, description=description, **kw)


def _form(properties: dict[str, Schema | Reference], required: list[str] | None = None) -> Schema:
    return Schema(type=OpenAPIType.OBJECT, properties=properties, required=required)


_MONEY = Schema(type=OpenAPIType.INTEGER, minimum=0, description="Amount in fen (integer): 2500 is ¥25.00")
_IMPORT_FIELDS: dict[str, Schema | Reference] = {
    "product_id": _text("The product the codes are for", format=OpenAPIFormat.UUID),
    "supplier": _text("Supplier name"),
    "unit_cost": _MONEY,
    "currency": _text("ISO currency, default the tenant's"),
    "purchase_ref": _text("Purchase order reference"),
    "expires_at": _text("Expiry of the codes (ISO 8601)", format=OpenAPIFormat.DATE_TIME),
    "notes": _text("Free notes"),
    "encoding": _text("Text encoding of the file when not detected (e.g. gb18030)"),
    "mapping": _text('Column mapping as JSON, e.g. {"code": "卡号", "pin": "密码"}'),
}
_OAUTH_ERROR = Schema(
    type=OpenAPIType.OBJECT,
    title="OAuthError",
    description="RFC 6749 §5.2 error, with the problem+json members",
    required=["error", "type", "title", "status", "code", "detail"],
    properties={
        "error": _text("RFC 6749 error code (invalid_client, invalid_scope …)"),
        "error_description": _text("What went wrong"),
        "type": _text("Problem type URI"),
        "title": _text("Short title"),
        "status": Schema(type=OpenAPIType.INTEGER),
        "code": _text("Stable code: oauth_<error>"),
        "detail": _text("What went wrong"),
    },
)
_OAUTH_ERRORS: dict[int, dict[str, Schema | Reference]] = {
    status: {"application/json": _OAUTH_ERROR} for status in (400, 401)
}

#: Handlers that read their body themselves, by (method, path): what they accept.
REQUEST_BODIES: dict[tuple[str, str], BodySpec] = {
    ("POST", TOKEN_URL): BodySpec(
        {
            "application/x-www-form-urlencoded": _form(
                {
                    "grant_type": _text("Always client_credentials", enum=["client_credentials"]),
                    "scope": _text("Space-separated scopes to narrow the token to (default: all the client holds)"),
                    "client_id": _text("Client id, when not sent with HTTP Basic"),
                    "client_secret": _text("Client secret, when not sent with HTTP Basic"),
                },
                ["grant_type"],
            )
        },
        "OAuth2 client credentials grant (RFC 6749 §4.4); client auth by HTTP Basic or the form",
        extra_error_content=_OAUTH_ERRORS,
    ),
    ("POST", "/api/v1/code-imports"): BodySpec(
        {
            "multipart/form-data": _form(
                {"file": _binary("CSV, TXT or XLSX file of codes"), "text": _text("Pasted codes, one a line"),
                 **_IMPORT_FIELDS},
                ["product_id"],
            ),
            "application/json": _form({"text": _text("Pasted codes, one a line"), **_IMPORT_FIELDS},
                                      ["text", "product_id"]),
            "text/csv": _text("The file itself; batch fields and ``filename`` as query parameters"),
            "application/octet-stream": _binary("The file itself; batch fields and ``filename`` as query parameters"),
        },
        "The codes to validate: a multipart upload, JSON with ``text``, or the raw file",
    ),
    ("POST", "/api/v1/members/import"): BodySpec(
        {
            "multipart/form-data": _form(
                {"file": _binary("CSV, TXT or XLSX file of members"), "text": _text("Pasted CSV"),
                 "encoding": _IMPORT_FIELDS["encoding"]}
            ),
            "text/csv": _text("The CSV itself; ``filename`` and ``encoding`` as query parameters"),
        },
        "The members to import: a multipart upload or the raw CSV",
    ),
    ("POST", "/api/v1/bulk-grants"): BodySpec(
        {
            "multipart/form-data": _form(
                {
                    "file": _binary("CSV or XLSX of recipients: name, phone or e-mail, SKU, quantity"),
                    "campaign_ref": _text("Campaign reference recorded on every grant"),
                    "channel": _text("Delivery channel (sms, email …)"),
                },
                ["file"],
            )
        },
        "The recipient file",
    ),
}


_REFERENCE_NAMES = frozenset({"code", "codes", "sku"})


def _is_reference(name: str) -> bool:
    """Whether a parameter or body field names a resource that may not exist (``product_id``, ``code``)."""
    return name.endswith(("_id", "_ids")) or name in _REFERENCE_NAMES


def _body_references(handler: HTTPRouteHandler, spec: BodySpec | None) -> bool:
    if spec is not None:
        return any(
            isinstance(schema, Schema) and any(_is_reference(name) for name in (schema.properties or {}))
            for schema in spec.content.values()
        )
    data = handler.parsed_fn_signature.parameters.get("data")
    annotation = data.annotation if data is not None else None
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return any(_is_reference(name) for name in annotation.__struct_fields__)
    return False


def error_statuses(method: str, path: str, handler: HTTPRouteHandler, has_params: bool, has_body: bool) -> set[int]:
    """Every error status the pipeline and the handler's kind can answer for one operation.

    All: 400 (malformed request, any header) and 503 (database or broker away). ``/api/v1``: 401, 403
    and 429 (bearer token, scope guard, rate limit and risk rules), POST also 409/422 from
    ``Idempotency-Key``. Operator routes: 401. Path ids: 404 (references in the query or the body: see
    ``document_api``). Parameters: 422. Bodies: 413, 415, 422.
    Writes (POST, PATCH, DELETE) other than the token and login endpoints: 409 from the domain rules.
    """
    statuses = {400, 503}
    if path.startswith("/api/v1"):
        statuses |= {401, 403, 429}
        if method == "POST":
            statuses |= {409, 422}
    if needs_operator(handler):
        statuses.add(401)
    if "{" in path:
        statuses.add(404)
    if has_params:
        statuses.add(422)
    if has_body:
        statuses |= {413, 415, 422}
    if method in ("POST", "PATCH", "DELETE") and path not in (TOKEN_URL, "/api/platform/v1/login"):
        statuses.add(409)
    if path == "/api/platform/v1/login":
        statuses |= {401, 423}
    if path == TOKEN_URL:
        statuses.add(401)
    return statuses


def _problem_spec(status: int) -> ResponseSpec:
    return ResponseSpec(
        data_container=ProblemDetails,
        generate_examples=False,
        description=ERROR_DESCRIPTIONS[status],
        media_type=PROBLEM_MEDIA_TYPE,
    )


#: Headers that come with some error statuses.
_RETRY_AFTER = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.INTEGER, minimum=0),
    description="Seconds to wait before retrying",
)
_ERROR_HEADERS: dict[int, dict[str, OpenAPIHeader]] = {
    401: {
        "WWW-Authenticate": OpenAPIHeader(
            schema=Schema(type=OpenAPIType.STRING),
            description='On /api/v1: Bearer realm="kaquan"',
        )
    },
    423: {"Retry-After": _RETRY_AFTER},
    429: {"Retry-After": _RETRY_AFTER},
    503: {"Retry-After": _RETRY_AFTER},
}


def _operation_class(spec: BodySpec | None) -> type[Operation]:
    """An ``Operation`` that adds the error headers and ``spec``'s request body and extra media types."""

    class DocumentedOperation(Operation):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            for status, headers in _ERROR_HEADERS.items():
                response = (self.responses or {}).get(str(status))
                if isinstance(response, OpenAPIResponse):
                    response.headers = {**(response.headers or {}), **headers}
            if spec is None:
                return
            if self.request_body is None:
                self.request_body = RequestBody(
                    content={k: OpenAPIMediaType(schema=v) for k, v in spec.content.items()},
                    description=spec.description,
                    required=True,
                )
            for status, content in (spec.extra_error_content or {}).items():
                response = (self.responses or {}).get(str(status))
                if isinstance(response, OpenAPIResponse):
                    response.content = {
                        **(response.content or {}),
                        **{k: OpenAPIMediaType(schema=v) for k, v in content.items()},
                    }

    return DocumentedOperation


def _security(handler: HTTPRouteHandler, path: str) -> list[dict[str, list[str]]] | None:
    scopes = guard_scopes(handler)
    if scopes:
        return [{OAUTH2: scopes}]
    if needs_operator(handler):
        return [{OPERATOR_BEARER: []}]
    if path == TOKEN_URL:
        return [{CLIENT_BASIC: []}, {}]
    return None


def document_api(app: Litestar) -> None:
    """Give every documented operation its security, error responses and self-read request body.

    Call before the document is first built (``create_app`` does); explicit ``responses`` and
    ``security`` set on a handler win.
    """
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        path = route.path_format or "/"
        for handler in route.route_handlers:
            if not handler.resolve_include_in_schema():
                continue
            params = handler.parsed_fn_signature.parameters
            methods = sorted(m.upper() for m in handler.http_methods)
            spec = next((REQUEST_BODIES[(m, path)] for m in methods if (m, path) in REQUEST_BODIES), None)
            has_body = "data" in params or spec is not None
            dependencies = handler.resolve_dependencies()
            has_params = bool(route.path_parameters) or any(
                name not in _RESERVED_KWARGS and name not in dependencies for name in params
            )
            statuses: set[int] = set()
            for method in methods:
                statuses |= error_statuses(method, path, handler, has_params, has_body)
            if path != TOKEN_URL and (
                any(_is_reference(name) for name in params if name not in dependencies)
                or _body_references(handler, spec)
            ):
                statuses.add(404)
            handler.responses = {
                **{status: _problem_spec(status) for status in sorted(statuses)},
                **(handler.responses or {}),
            }
            if handler.security is None and (security := _security(handler, path)) is not None:
                handler.security = security
            if handler.operation_class is Operation:
                handler.operation_class = _operation_class(spec)


def openapi_config() -> OpenAPIConfig:
    """The document's metadata and security schemes; ``document_api`` fills in the operations."""
    return OpenAPIConfig(
        title="kaquan API",
        version="1",
        path="/schema",
        description=(
            "Tenant API (`/api/v1`, OAuth2 client credentials) and platform API (`/api/platform/v1`, "
            "operator bearer token). Every error is `application/problem+json` (`ProblemDetails`); "
            "money is integer fen."
        ),
        components=Components(
            security_schemes={
                OAUTH2: SecurityScheme(
                    type="oauth2",
                    description="Tenant API clients: OAuth2 client credentials at `POST /oauth/token`.",
                    flows=OAuthFlows(client_credentials=OAuthFlow(token_url=TOKEN_URL, scopes=dict(SCOPES))),
                ),
                OPERATOR_BEARER: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="Platform operators: the token from `POST /api/platform/v1/login`.",
                ),
                CLIENT_BASIC: SecurityScheme(
                    type="http",
                    scheme="basic",
                    description="API client id and secret, for `POST /oauth/token`.",
                ),
            },
        ),
    )
