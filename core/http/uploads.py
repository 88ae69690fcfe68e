"""Upload bodies: the hard ceiling of a request that carries a file, and the length it declares.

The real limit of an upload is ``KAQUAN_MAX_IMPORT_BYTES``; a handler refuses a body that declares more
than that plus :data:`MULTIPART_SLACK` before reading it, and the parsers check the file itself.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import ClientException

UPLOAD_CEILING = 1 << 30
"""Hard ceiling of an upload body whatever the settings say (multipart without Content-Length spools to
disk)."""
MULTIPART_SLACK = 256 * 1024
"""Room for multipart boundaries and the form fields next to the file."""


def declared_length(request: Request[Any, Any, Any]) -> int | None:
    """The body length the request declares (``Content-Length``), or ``None`` when it declares none."""
    try:
        return request.content_length
    except ClientException:
        return None
