"""Console routers: the operator console under ``/platform``, the tenant console under ``/console``.

Their controllers come from each domain's declaration (:mod:`core.domains`). Both routers render errors
as HTML pages (see :mod:`admin_ui.errors`) instead of problem+json.
"""

from __future__ import annotations

from litestar import Router

from admin_ui.errors import HTML_EXCEPTION_HANDLERS
from admin_ui.i18n import LOCALES, translations
from core.domains import handlers


def console_routes() -> list[Router]:
    """The two console routers (catalogs are compiled here, so a broken catalog fails at start-up)."""
    for locale in LOCALES:
        translations(locale)
    return [
        Router(
            path="/platform",
            route_handlers=handlers("platform"),
            exception_handlers=HTML_EXCEPTION_HANDLERS,
            include_in_schema=False,
        ),
        Router(
            path="/console",
            route_handlers=handlers("console"),
            exception_handlers=HTML_EXCEPTION_HANDLERS,
            include_in_schema=False,
        ),
    ]
