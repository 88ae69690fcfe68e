"""structlog set-up: JSON lines (or console) with request id and tenant id from contextvars.

JSON lines are written as UTF-8 text: Chinese stays readable (``"卡券"``, not ``"\\u5361\\u5238"``).
"""

from __future__ import annotations

import io
import logging
import sys
from typing import TextIO

import structlog


def _utf8(stream: TextIO) -> TextIO:
    """``stream``, switched to UTF-8 when it is a text stream in another encoding (e.g. under ``LANG=C``),
    so a log line with Chinese in it can always be written."""
    encoding = (getattr(stream, "encoding", None) or "utf-8").lower().replace("_", "-")
    if encoding not in ("utf-8", "utf8") and isinstance(stream, io.TextIOWrapper):
        try:
            stream.reconfigure(encoding="utf-8", errors="backslashreplace")
        except (ValueError, io.UnsupportedOperation):
            return stream  # a stream that cannot switch keeps its encoding
    return stream


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    """Log to stderr at ``level``: one JSON object per line (``json``) or a readable console line."""
    lvl = getattr(logging, level.upper(), logging.INFO)
    stream = _utf8(sys.stderr)
    logging.basicConfig(format="%(message)s", stream=stream, level=lvl, force=True)
    renderer = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
