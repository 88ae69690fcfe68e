"""Every route guard is awaited in the event loop: Litestar sends a plain-function guard to a worker thread
(``AsyncCallable``) on every request, which cost more than the check."""

from __future__ import annotations

import inspect

from litestar.handlers import HTTPRouteHandler
from litestar.utils.sync import AsyncCallable

from tenants.guards import require_operator, require_permission, require_scope


def test_the_guard_factories_make_coroutine_functions() -> None:
    assert inspect.iscoroutinefunction(require_scope("grants:write"))
    assert inspect.iscoroutinefunction(require_permission("grants.manage"))
    assert inspect.iscoroutinefunction(require_operator)


async def test_no_route_guard_runs_in_a_thread(app) -> None:
    checked = 0
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if not isinstance(handler, HTTPRouteHandler):
                continue
            for guard in handler.resolve_guards():
                assert not isinstance(guard, AsyncCallable), (route.path, guard)
                checked += 1
    assert checked > 50  # the API and the consoles are guarded
