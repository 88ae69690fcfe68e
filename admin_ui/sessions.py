"""Console login sessions (server-side, cookie ``kq_session`` configured in ``core/app.py``)."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.types import Empty
from litestar.utils.scope.state import ScopeState

SESSION_COOKIE = "kq_session"
SESSION_STORE = "sessions"


async def start_session(request: Request[Any, Any, Any], data: dict[str, str]) -> None:
    """Log in: drop the pre-login session and store ``data`` under a fresh session id.

    A new id on every login means a session id planted before login (session fixation) is worthless.
    """
    cookies = request.cookies  # the connection's parsed-cookie cache, shared with the session middleware
    old_id = cookies.pop(SESSION_COOKIE, None)
    if old_id:
        await request.app.stores.get(SESSION_STORE).delete(old_id)
    ScopeState.from_scope(request.scope).session_id = Empty  # the middleware then generates a new id
    request.set_session(dict(data))


def end_session(request: Request[Any, Any, Any]) -> None:
    """Log out: the session is deleted from the store and its cookie cleared."""
    request.clear_session()


def safe_next(value: str | None, prefix: str | tuple[str, ...], default: str) -> str:
    """A same-site path under ``prefix`` (one or several) to go to after login, else ``default`` (no open redirect)."""
    if (
        value
        and value.startswith(prefix)
        and not value.startswith("//")
        and "\\" not in value
        and not any(c in value for c in "\r\n\t")
    ):
        return value
    return default
