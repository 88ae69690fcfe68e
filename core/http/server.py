"""The HTTP protocol ``kaquan serve`` runs: uvicorn's httptools protocol, telling the access log when
uvicorn answered a request itself.

uvicorn refuses a malformed request body (a bad chunk size, say) with its own ``400`` and closes the
connection; the app only sees ``http.disconnect``, which is also what a client hanging up looks like.
This protocol marks the request's ASGI scope (the dict the app was called with) before uvicorn writes
its 400, so the access-log line says ``400`` — what the client got — and not ``499`` or ``500``.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

TRANSPORT_STATUS = "kaquan.transport_status"
"""Scope key: the status the HTTP server itself sent for this request (the app sent none)."""


class KaquanHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the scope mark above."""

    def send_400_response(self, msg: str) -> None:
        cycle: Any = getattr(self, "cycle", None)
        if cycle is not None and not cycle.response_started:
            cycle.scope[TRANSPORT_STATUS] = 400
        super().send_400_response(msg)
