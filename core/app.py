"""``create_app(settings)``: the composition root.

The kernel routes (health, metrics, static files) are named here; every domain's API controllers, console
and H5 pages come from its declaration (:mod:`core.domains`).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar
from litestar.config.csrf import CSRFConfig
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.static_files import create_static_files_router
from litestar.stores.file import FileStore
from litestar.stores.registry import StoreRegistry

from core.audit.sealer import AuditSealer
from core.domains import handlers
from core.health import health, metrics, ready
from core.http.decoding import KaquanRequest, decode_request_body, request_guard_middleware
from core.http.idempotency import idempotency_middleware
from core.http.openapi import document_api, openapi_config
from core.http.problems import exception_handlers_by_realm
from core.http.ratelimit import RateLimiter
from core.http.request_log import request_log_middleware
from core.http.sessions import ResilientRedisStore
from core.kernel import Kernel
from core.logging import configure_logging
from core.root import root
from core.settings import Settings, load_settings
from tenants.auth import request_context_middleware

UI_DIR = Path(__file__).resolve().parent.parent / "admin_ui"


def _secret(kernel: Kernel) -> str:
    if kernel.settings.secret_key:
        return kernel.settings.secret_key
    master = kernel.keys.keyring.keys[kernel.keys.keyring.current_id]
    return hashlib.sha256(master + b"kaquan-csrf").hexdigest()


#: Paths without a console session or CSRF check (the API, OAuth, probes, static files, the schema).
_NO_SESSION = ["/api", "/oauth", "/channels", "/health", "/ready", "/metrics", "/static", "/schema"]


def _stores(settings: Settings) -> StoreRegistry:
    """Console sessions live in Redis in service mode, in files in embedded mode."""
    if settings.redis_url:
        return StoreRegistry({"sessions": ResilientRedisStore.for_url(settings.redis_url, settings.redis_namespace)})
    return StoreRegistry({"sessions": FileStore(settings.data_path / "sessions")})


def _session_config(settings: Settings) -> ServerSideSessionConfig:
    return ServerSideSessionConfig(
        store="sessions",
        key="kq_session",
        max_age=settings.session_ttl_seconds,
        httponly=True,
        samesite="lax",
        secure=settings.base_url.startswith("https"),
        exclude=_NO_SESSION,
    )


def _csrf_config(kernel: Kernel) -> CSRFConfig:
    return CSRFConfig(
        secret=_secret(kernel),
        cookie_name="kq_csrf",
        header_name="x-csrftoken",
        cookie_secure=kernel.settings.base_url.startswith("https"),
        cookie_samesite="lax",
        exclude=[p for p in _NO_SESSION if p != "/static"],
    )


def create_app(settings: Settings | None = None) -> Litestar:
    """The application: kernel, plugins, jobs, the audit sealer, and every domain's routes."""
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_json)
    from core.plugin_host import PluginError, load_plugins

    try:  # a broken plugin stops start-up with one readable line naming it and the switch that disables it
        plugins = load_plugins(settings.disabled_plugin_names)
    except PluginError as exc:
        raise SystemExit(f"kaquan cannot start: {exc}") from None
    kernel = Kernel.create(settings)

    from admin_ui.errors import HTML_EXCEPTION_HANDLERS
    from admin_ui.routes import console_routes
    from core.jobs.runtime import JobRuntime
    from h5.pages import EXCEPTION_HANDLERS as H5_EXCEPTION_HANDLERS
    from h5.routes import h5_router, short_link_router

    jobs = JobRuntime(kernel, plugins=plugins)
    sealer = AuditSealer(kernel.db)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await jobs.start()
        await sealer.start()
        try:
            yield
        finally:
            await sealer.stop()
            await jobs.stop()
            await app.state.rate_limiter.close()
            await kernel.close()

    app = Litestar(
        route_handlers=[
            root,
            health,
            ready,
            metrics,
            *handlers("api"),
            create_static_files_router(
                path="/static", directories=[UI_DIR / "static"], include_in_schema=False
            ),
            *console_routes(),
            h5_router(),
            short_link_router(),
        ],
        middleware=[
            request_log_middleware,
            request_guard_middleware,
            _session_config(settings).middleware,
            request_context_middleware,
            idempotency_middleware,
        ],
        csrf_config=_csrf_config(kernel),
        stores=_stores(settings),
        exception_handlers=exception_handlers_by_realm(
            {"/console": HTML_EXCEPTION_HANDLERS, "/platform": HTML_EXCEPTION_HANDLERS, "/h5": H5_EXCEPTION_HANDLERS,
             "/c": H5_EXCEPTION_HANDLERS}
        ),
        request_class=KaquanRequest,
        before_request=decode_request_body,
        openapi_config=openapi_config(),
        request_max_body_size=settings.max_body_bytes,
        lifespan=[lifespan],
        logging_config=None,
        debug=False,
    )
    document_api(app)
    app.state.kernel = kernel
    app.state.jobs = jobs
    app.state.rate_limiter = RateLimiter(settings.redis_url, settings.redis_namespace)
    return app
