"""The ``/h5`` router: the H5 controllers the domains declare (:mod:`core.domains`), their stylesheet,
and HTML error pages."""

from __future__ import annotations

from litestar import Router
from litestar.static_files import create_static_files_router

from core.domains import handlers
from h5.pages import EXCEPTION_HANDLERS, H5_DIR
from h5.shortlinks import short_link


def h5_router() -> Router:
    """The ``/h5`` router."""
    return Router(
        path="/h5",
        route_handlers=[
            *handlers("h5"),
            create_static_files_router(path="/static", directories=[H5_DIR / "static"], include_in_schema=False),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        include_in_schema=False,
    )


def short_link_router() -> Router:
    """``/c/<code>``: campaign short links at the site root (H5 error pages)."""
    return Router(
        path="/", route_handlers=[short_link], exception_handlers=EXCEPTION_HANDLERS, include_in_schema=False
    )
