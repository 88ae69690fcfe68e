"""Errors on console pages become pages, not problem+json.

Not logged in → redirect to the realm's login page; suspended tenant → a "tenant suspended" page;
other refusals and errors → a readable error page in the user's language (CSRF failures included).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, PermissionDeniedException, ValidationException
from litestar.response import Redirect

from admin_ui.forms import FormInvalid, problem_of
from admin_ui.i18n import N_
from admin_ui.rendering import locale_of, render, translator
from core.errors import DomainError, TenantSuspended, Unauthorized
from core.http.problems import OUTAGE_RETRY_AFTER, classify_failure

log = structlog.get_logger("kaquan.console")

_TITLES: dict[int, str] = {
    400: N_("The request could not be understood"),
    403: N_("Access denied"),
    404: N_("Page not found"),
    405: N_("This action is not available here"),
    409: N_("This conflicts with the current state"),
    413: N_("The upload is too large"),
    422: N_("Some input is not valid"),
    423: N_("Account locked"),
    429: N_("Too many requests"),
    500: N_("Something went wrong"),
    503: N_("Service temporarily unavailable"),
}


def login_path(request: Request[Any, Any, Any]) -> str:
    return "/platform/login" if request.url.path.startswith("/platform") else "/console/login"


def _error_page(
    request: Request[Any, Any, Any], status: int, message: str, headers: dict[str, str] | None = None
) -> Response[str]:
    t = translator(request)
    title = t.gettext(_TITLES.get(status, _TITLES[400 if status < 500 else 500]))
    page = render(
        request,
        "error.html",
        {
            "status": status,
            "title": title,
            "message": message,
            "home": "/platform" if request.url.path.startswith("/platform") else "/console",
        },
        status=status,
    )
    if headers:
        page.headers.update(headers)
    return page


def domain_error_page(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    if isinstance(exc, Unauthorized):
        target = login_path(request)
        if request.method == "GET" and request.url.path != target:
            target += "?" + urlencode({"next": request.url.path})
        return Redirect(target, status_code=303)
    if isinstance(exc, TenantSuspended) or exc.code == "tenant_suspended":
        return render(
            request, "console/suspended.html", {"message": exc.detail(locale_of(request))}, status=403
        )
    response = _error_page(request, exc.status, exc.detail(locale_of(request)))
    response.headers.update(exc.headers)  # e.g. Retry-After of a 503
    return response


def http_error_page(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    t = translator(request)
    if isinstance(exc, PermissionDeniedException) and "CSRF" in str(exc.detail):
        message = t.gettext(
            "This form has expired or did not come from this site. Reload the page and try again."
        )
        return _error_page(request, 403, message)
    status = exc.status_code
    if isinstance(exc, ValidationException) and (field := _invalid_parameter(exc)):
        return _error_page(request, status, problem_of(FormInvalid(field), t, locale_of(request)).message)
    return _error_page(request, status, t.gettext(_TITLES.get(status, _TITLES[400])))


def _invalid_parameter(exc: ValidationException) -> str | None:
    """The query/path parameter Litestar refused (e.g. ``cursor``), to name it on the page."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if isinstance(item, dict) and isinstance(item.get("key"), str) and item["key"]:
            return str(item["key"])
    return None


def form_invalid_page(request: Request[Any, Any, Any], exc: FormInvalid) -> Response[Any]:
    """A form value a handler did not catch itself: a 422 page naming the field, never a 500."""
    problem = problem_of(exc, translator(request), locale_of(request))
    return _error_page(request, 422, problem.message)


def internal_error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A bug is a logged 500 page; a refused value a 422 page; a database/queue outage a 503 page."""
    t = translator(request)
    kind = classify_failure(exc)
    if kind == "outage":
        log.warning("service_unavailable", path=request.url.path, error_type=type(exc).__name__)
        message = t.gettext(
            "The database or the queue cannot be reached right now. Nothing was changed; "
            "try again in a moment."
        )
        return _error_page(request, 503, message, headers={"Retry-After": OUTAGE_RETRY_AFTER})
    if kind == "bad_value":
        log.warning("value_refused_by_database", path=request.url.path, error_type=type(exc).__name__)
        return _error_page(
            request, 422, t.gettext("A value is out of range or not valid text. Nothing was changed.")
        )
    log.error("console_error", path=request.url.path, error_type=type(exc).__name__, exc_info=exc)
    return _error_page(request, 500, t.gettext("An internal error occurred; it was logged."))


HTML_EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    DomainError: domain_error_page,
    HTTPException: http_error_page,
    FormInvalid: form_invalid_page,
    Exception: internal_error_page,
}
