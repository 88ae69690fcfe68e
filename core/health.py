"""``/health`` (alive), ``/ready`` (database and broker reachable) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text


class Health(msgspec.Struct):
    status: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)


@get("/health", include_in_schema=False)
async def health() -> Health:
    return Health("ok")


@get("/ready", include_in_schema=False)
async def ready(request: Request[Any, Any, Any]) -> Response[Health]:
    kernel = request.app.state.kernel
    checks: dict[str, str] = {}
    try:
        async with kernel.db.engine.connect() as conn:
            await conn.execute(text("select 1"))
        checks["database"] = "ok"
    except Exception as exc:  # boundary: readiness probe; any database failure means not ready
        checks["database"] = f"error: {type(exc).__name__}"
    runtime = getattr(request.app.state, "jobs", None)
    if runtime is not None:
        checks["broker"] = await runtime.ping()
    ok = all(v == "ok" for v in checks.values())
    return Response(Health("ok" if ok else "unavailable", checks), status_code=200 if ok else 503)


@get("/metrics", include_in_schema=False)
async def metrics() -> Response[bytes]:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
