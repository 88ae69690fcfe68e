"""``GET /``: send a browser to the tenant console (its dashboard when logged in, else the login page)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Redirect

CONSOLE_LOGIN = "/console/login"
CONSOLE_HOME = "/console"


@get("/", include_in_schema=False, sync_to_thread=False)
def root(request: Request[Any, Any, Any]) -> Redirect:
    """The site root has no page of its own: redirect (303) to where a person starts.

    A tenant console session goes to the dashboard (which re-checks the session and sends a stale one
    to the login page); anyone else goes to the login page.
    """
    session = request.scope.get("session")
    logged_in = isinstance(session, dict) and session.get("realm") == "tenant"
    return Redirect(CONSOLE_HOME if logged_in else CONSOLE_LOGIN, status_code=303)
