"""The upload size guard: file uploads (imports, recipient files) up to ``KAQUAN_MAX_IMPORT_BYTES``.

An upload route raises Litestar's body ceiling to :data:`UPLOAD_CEILING` (``request_max_body_size``) and
enforces the real limit itself, so the refusal is ``413 import_too_large`` with the sizes in the body:

- :func:`check_declared_length` refuses a request whose ``Content-Length`` already says it is too large
  (with :data:`MULTIPART_SLACK` of room for the multipart boundaries and form fields next to the file);
- :func:`read_body` streams a raw body into a spooled temporary file and refuses it at the first chunk
  past the limit (a body without ``Content-Length`` is counted as it arrives).
"""

from __future__ import annotations

import tempfile
from typing import IO, Any, Literal

from litestar import Request
from litestar.exceptions import ClientException

from core.errors import ValidationFailed

#: Hard ceiling of an upload body whatever the settings say (multipart without Content-Length spools to disk).
UPLOAD_CEILING = 1 << 30
#: Room for multipart boundaries and the form fields next to the file.
MULTIPART_SLACK = 256 * 1024
#: A raw body is kept in memory up to this size, then spooled to a temporary file.
SPOOL_BYTES = 8 * 1024 * 1024

#: What the upload is for, as the refusal says it: codes and members are imported, recipient files uploaded.
UploadAction = Literal["import", "upload"]

_ACTION_WORDS: dict[str, tuple[str, str]] = {"import": ("imported", "导入"), "upload": ("uploaded", "上传")}


def too_large(
    size: int, limit: int, *, action: UploadAction = "import", with_size: bool = True
) -> ValidationFailed:
    """``413 import_too_large`` for an upload of ``size`` bytes over ``limit`` (both also in the body).

    The detail states the size unless ``with_size`` is false: then it says only that the upload is larger
    than the limit (the members import, whose streamed count stops at the first chunk past it).
    """
    if with_size:
        en_verb, zh_verb = _ACTION_WORDS[action]
        en = f"The upload is {size} bytes; at most {limit} bytes can be {en_verb} at once — split the file"
        zh = f"上传内容为 {size} 字节，单次最多{zh_verb} {limit} 字节，请拆分文件"
    else:
        en = f"The upload is larger than {limit} bytes; split the file"
        zh = f"上传内容超过 {limit} 字节，请拆分文件"
    return ValidationFailed(
        en, zh, code="import_too_large", status=413, extra={"size_bytes": size, "max_bytes": limit}
    )


def declared_length(request: Request[Any, Any, Any]) -> int | None:
    """The request's ``Content-Length``, or ``None`` when it has none (or an unreadable one)."""
    try:
        return request.content_length
    except ClientException:
        return None


def check_declared_length(
    request: Request[Any, Any, Any], limit: int, *, action: UploadAction = "import"
) -> None:
    """Refuse (:func:`too_large`) a request whose declared length exceeds ``limit`` plus the multipart
    slack."""
    declared = declared_length(request)
    if declared is not None and declared > limit + MULTIPART_SLACK:
        raise too_large(declared, limit, action=action)


async def read_body(request: Request[Any, Any, Any], limit: int, *, with_size: bool = True) -> IO[bytes]:
    """The raw body in a spooled temporary file (rewound), refused (:func:`too_large`) past ``limit`` bytes.

    ``with_size`` is passed to :func:`too_large`: whether the refusal states the bytes counted so far.
    """
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - returned to the caller
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            spool.close()
            raise too_large(total, limit, with_size=with_size)
        spool.write(chunk)
    spool.seek(0)
    return spool
